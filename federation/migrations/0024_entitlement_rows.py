"""Entitlement rows: each mapping row expanded to the accounts it reaches, kept by triggers."""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


# The scope rule of federation/entitlements/scope.py, in SQL: a row reaches accounts of its own
# business unit only; ``accounts`` narrows to the named ones, ``environments`` to those
# environments; an empty list (or JSON null) narrows nothing.
PG_REACHES = """
    a.business_unit_id = m.business_unit_id
    AND (m.accounts IN ('[]'::jsonb, 'null'::jsonb)
         OR m.accounts @> jsonb_build_array(a.account_id))
    AND (m.environments IN ('[]'::jsonb, 'null'::jsonb)
         OR m.environments @> jsonb_build_array(a.environment))
"""

PG_COLUMNS = 'mapping_id, "group", account_id, role_id, access, max_grant'
PG_SELECTED = 'm.id, m."group", a.id, m.role_id, m.access, m.max_grant'

# Statement-level triggers with transition tables: a bulk insert of 2,000 rows expands in one
# INSERT ... SELECT, not 2,000 trigger calls. PostgreSQL allows one event per trigger that has
# transition tables, hence three triggers per table on one function each.
PG_INSTALL = f"""
-- The group index covers the columns the resolution reads: an index-only scan.
CREATE INDEX entitlement_row_group_idx ON federation_entitlementrow ("group")
    INCLUDE (account_id, role_id, access, max_grant);

CREATE FUNCTION federation_entitlementrow_from_mappings() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM federation_entitlementrow e USING old_rows o WHERE e.mapping_id = o.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO federation_entitlementrow ({PG_COLUMNS})
        SELECT {PG_SELECTED}
        FROM new_rows m JOIN federation_account a ON a.business_unit_id = m.business_unit_id
        WHERE {PG_REACHES};
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION federation_entitlementrow_from_accounts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM federation_entitlementrow e USING old_rows o WHERE e.account_id = o.id;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO federation_entitlementrow ({PG_COLUMNS})
        SELECT {PG_SELECTED}
        FROM new_rows a JOIN federation_groupmapping m ON m.business_unit_id = a.business_unit_id
        WHERE {PG_REACHES};
    ELSE
        -- Only what decides the reach: an update of an alias or the approvers changes nothing.
        WITH moved AS (
            SELECT n.* FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.account_id, n.business_unit_id, n.environment)
                  IS DISTINCT FROM (o.account_id, o.business_unit_id, o.environment)
        ), dropped AS (
            DELETE FROM federation_entitlementrow e USING moved v WHERE e.account_id = v.id
        )
        INSERT INTO federation_entitlementrow ({PG_COLUMNS})
        SELECT {PG_SELECTED}
        FROM moved a JOIN federation_groupmapping m ON m.business_unit_id = a.business_unit_id
        WHERE {PG_REACHES};
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER entitlementrow_mapping_insert AFTER INSERT ON federation_groupmapping
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_from_mappings();
CREATE TRIGGER entitlementrow_mapping_update AFTER UPDATE ON federation_groupmapping
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_from_mappings();
CREATE TRIGGER entitlementrow_mapping_delete AFTER DELETE ON federation_groupmapping
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_from_mappings();
CREATE TRIGGER entitlementrow_account_insert AFTER INSERT ON federation_account
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_from_accounts();
CREATE TRIGGER entitlementrow_account_update AFTER UPDATE ON federation_account
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_from_accounts();
CREATE TRIGGER entitlementrow_account_delete AFTER DELETE ON federation_account
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_from_accounts();
-- TRUNCATE of either table (test database flushes) empties the expansion too.
CREATE FUNCTION federation_entitlementrow_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM federation_entitlementrow;
    RETURN NULL;
END $$;
CREATE TRIGGER entitlementrow_mapping_truncate AFTER TRUNCATE ON federation_groupmapping
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_truncate();
CREATE TRIGGER entitlementrow_account_truncate AFTER TRUNCATE ON federation_account
    FOR EACH STATEMENT EXECUTE FUNCTION federation_entitlementrow_truncate();

INSERT INTO federation_entitlementrow ({PG_COLUMNS})
SELECT {PG_SELECTED}
FROM federation_groupmapping m JOIN federation_account a ON a.business_unit_id = m.business_unit_id
WHERE {PG_REACHES};
"""

PG_REMOVE = """
DROP TRIGGER IF EXISTS entitlementrow_mapping_insert ON federation_groupmapping;
DROP TRIGGER IF EXISTS entitlementrow_mapping_update ON federation_groupmapping;
DROP TRIGGER IF EXISTS entitlementrow_mapping_delete ON federation_groupmapping;
DROP TRIGGER IF EXISTS entitlementrow_mapping_truncate ON federation_groupmapping;
DROP TRIGGER IF EXISTS entitlementrow_account_insert ON federation_account;
DROP TRIGGER IF EXISTS entitlementrow_account_update ON federation_account;
DROP TRIGGER IF EXISTS entitlementrow_account_delete ON federation_account;
DROP TRIGGER IF EXISTS entitlementrow_account_truncate ON federation_account;
DROP FUNCTION IF EXISTS federation_entitlementrow_from_mappings();
DROP FUNCTION IF EXISTS federation_entitlementrow_from_accounts();
DROP FUNCTION IF EXISTS federation_entitlementrow_truncate();
"""

# SQLite (the demo) has row-level triggers only; a demo's tables are small.
SQLITE_REACHES = """
    a.business_unit_id = {m}.business_unit_id
    AND (json_array_length({m}.accounts) = 0
         OR EXISTS (SELECT 1 FROM json_each({m}.accounts) j WHERE j.value = a.account_id))
    AND (json_array_length({m}.environments) = 0
         OR EXISTS (SELECT 1 FROM json_each({m}.environments) j WHERE j.value = a.environment))
"""


def _sqlite_expand(m: str, source: str) -> str:
    return (
        f"INSERT INTO federation_entitlementrow ({PG_COLUMNS}) "
        f'SELECT {m}.id, {m}."group", a.id, {m}.role_id, {m}.access, {m}.max_grant '
        f"FROM {source} WHERE {SQLITE_REACHES.format(m=m)};"
    )


SQLITE_INSTALL = [
    'CREATE INDEX entitlement_row_group_idx ON federation_entitlementrow ("group");',
    "CREATE TRIGGER entitlementrow_mapping_insert AFTER INSERT ON federation_groupmapping "
    f"BEGIN {_sqlite_expand('NEW', 'federation_account a')} END;",
    "CREATE TRIGGER entitlementrow_mapping_update AFTER UPDATE ON federation_groupmapping BEGIN "
    "DELETE FROM federation_entitlementrow WHERE mapping_id = OLD.id; "
    f"{_sqlite_expand('NEW', 'federation_account a')} END;",
    "CREATE TRIGGER entitlementrow_mapping_delete AFTER DELETE ON federation_groupmapping BEGIN "
    "DELETE FROM federation_entitlementrow WHERE mapping_id = OLD.id; END;",
    "CREATE TRIGGER entitlementrow_account_insert AFTER INSERT ON federation_account BEGIN "
    f"{_sqlite_expand('m', 'federation_groupmapping m, (SELECT NEW.id AS id, NEW.business_unit_id AS business_unit_id, NEW.account_id AS account_id, NEW.environment AS environment) a')} END;",  # noqa: E501
    "CREATE TRIGGER entitlementrow_account_update AFTER UPDATE OF account_id, business_unit_id, "
    "environment ON federation_account BEGIN "
    "DELETE FROM federation_entitlementrow WHERE account_id = OLD.id; "
    f"{_sqlite_expand('m', 'federation_groupmapping m, (SELECT NEW.id AS id, NEW.business_unit_id AS business_unit_id, NEW.account_id AS account_id, NEW.environment AS environment) a')} END;",  # noqa: E501
    "CREATE TRIGGER entitlementrow_account_delete AFTER DELETE ON federation_account BEGIN "
    "DELETE FROM federation_entitlementrow WHERE account_id = OLD.id; END;",
    _sqlite_expand("m", "federation_groupmapping m JOIN federation_account a"),
]

SQLITE_REMOVE = [
    "DROP INDEX IF EXISTS entitlement_row_group_idx;",
] + [
    f"DROP TRIGGER IF EXISTS entitlementrow_{table}_{event};"
    for table in ("mapping", "account")
    for event in ("insert", "update", "delete")
]


def install(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    statements = [PG_INSTALL] if vendor == "postgresql" else SQLITE_INSTALL
    for statement in statements:
        schema_editor.execute(statement)


def remove(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    statements = [PG_REMOVE] if vendor == "postgresql" else SQLITE_REMOVE
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("federation", "0023_device_login"),
    ]

    operations = [
        migrations.CreateModel(
            name="EntitlementRow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("group", models.CharField(max_length=256)),
                ("access", models.CharField(max_length=16)),
                ("max_grant", models.DurationField(blank=True, null=True)),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="federation.account",
                    ),
                ),
                (
                    "mapping",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="federation.groupmapping",
                    ),
                ),
                (
                    "role",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="federation.logicalrole",
                    ),
                ),
            ],
        ),
        migrations.RunPython(install, remove),
    ]
