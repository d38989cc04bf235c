"""Let the append-only trigger allow the sequencer's one update and nothing else.

An unsequenced event (seq, prev_hash, hash, sequenced_at all NULL) may have those four columns
set, once, from NULL to values; every other column (compared as the whole row, so a column added
later is covered too) must stay as it was. Any other UPDATE, and every DELETE, is refused.
"""

from django.db import migrations

ALLOW_SEQUENCING = """
CREATE OR REPLACE FUNCTION federation_audit_append_only() RETURNS trigger AS $$
DECLARE
    placed federation_auditevent;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- The row as it was, with only its place filled in: every other column, including any
        -- added later, must be exactly as before.
        placed := OLD;
        placed.seq := NEW.seq;
        placed.prev_hash := NEW.prev_hash;
        placed.hash := NEW.hash;
        placed.sequenced_at := NEW.sequenced_at;
        IF OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
           AND OLD.sequenced_at IS NULL
           AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
           AND NEW.sequenced_at IS NOT NULL
           AND NEW IS NOT DISTINCT FROM placed THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

REFUSE_ALL = """
CREATE OR REPLACE FUNCTION federation_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def allow_sequencing(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ALLOW_SEQUENCING, params=None)


def refuse_all(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFUSE_ALL, params=None)


class Migration(migrations.Migration):
    dependencies = [("federation", "0016_audit_unsequenced_events")]

    operations = [migrations.RunPython(allow_sequencing, refuse_all)]
