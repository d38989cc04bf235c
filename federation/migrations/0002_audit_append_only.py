"""Seed the audit chain head and, on PostgreSQL, refuse UPDATE and DELETE on audit events."""

from django.db import migrations

CREATE_TRIGGER = """
CREATE OR REPLACE FUNCTION federation_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER federation_auditevent_append_only
    BEFORE UPDATE OR DELETE ON federation_auditevent
    FOR EACH ROW EXECUTE FUNCTION federation_audit_append_only();
"""

DROP_TRIGGER = """
DROP TRIGGER IF EXISTS federation_auditevent_append_only ON federation_auditevent;
DROP FUNCTION IF EXISTS federation_audit_append_only();
"""


def seed_head(apps, schema_editor):
    head = apps.get_model("federation", "AuditChainHead")
    head.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})


def unseed_head(apps, schema_editor):
    apps.get_model("federation", "AuditChainHead").objects.filter(pk=1).delete()


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_TRIGGER, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [("federation", "0001_initial")]

    operations = [
        migrations.RunPython(seed_head, unseed_head),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
