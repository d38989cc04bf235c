"""The resolver's two database reads, as raw SQL built from the models.

Raw on purpose: they are the hot path of every portal page, API call and issuance. One round
trip answers both the mapping version and a person's active grants (about 0.3 ms warm; the
same through two ORM queries took 1.3-2 ms, bench/entitlements.py "warm+user"), and the
mapping rows come back with their JSON scope columns as text, parsed once per distinct value.
Both are prepared statements, bound server-side (``federation.rawsql.prepared_cursor``).
Tables, columns and the grant state all come from the models, so a rename there cannot leave
these queries behind; identifiers come only from the models, and every value is a bound
parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Field, Model

from access_requests.models import Grant
from federation.models import GroupMapping, MappingVersion
from federation.rawsql import prepared_cursor


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(model: type[Model], *fields: str) -> dict[str, str]:
    """Quoted column names of ``fields`` (a foreign key's is its ``_id`` column)."""
    quoted = {}
    for name in fields:
        field = model._meta.get_field(name)
        assert isinstance(field, Field) and field.column, f"{name} is not a column"
        quoted[name] = connection.ops.quote_name(field.column)
    return quoted


@cache
def _mapping_rows_sql() -> str:
    """The mapping-row query up to its group condition; scope columns as text on PostgreSQL."""
    m = _columns(
        GroupMapping,
        "group",
        "role",
        "business_unit",
        "environments",
        "accounts",
        "access",
        "max_grant",
    )
    text = "::text" if connection.vendor == "postgresql" else ""
    columns = (
        f"m.{m['group']}, m.{m['role']}, m.{m['business_unit']}, m.{m['environments']}{text}, "
        f"m.{m['accounts']}{text}, m.{m['access']}, m.{m['max_grant']}"
    )
    return f"SELECT {columns} FROM {_table(GroupMapping)} m WHERE m.{m['group']}"  # noqa: S608


def fetch_mapping_rows(groups: Sequence[str]) -> list[tuple[Any, ...]]:
    """(group, role id, business unit id, environments, accounts, access, max grant) of every
    mapping row of ``groups``, through the group index."""
    select = _mapping_rows_sql()
    with prepared_cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array parameter: a 1,000-literal IN list makes PostgreSQL pick a seq scan.
            cursor.execute(f"{select} = ANY(%s)", [list(groups)])
            return list(cursor.fetchall())
        rows: list[tuple[Any, ...]] = []
        # SQLite (demo only) caps bound parameters; chunk the IN list.
        for start in range(0, len(groups), 500):
            chunk = list(groups[start : start + 500])
            marks = ",".join(["%s"] * len(chunk))
            cursor.execute(f"{select} IN ({marks})", chunk)
            rows.extend(cursor.fetchall())
        return rows


@cache
def _version_and_grants_sql() -> str:
    g = _columns(
        Grant,
        "id",
        "account",
        "role",
        "starts_at",
        "ends_at",
        "request",
        "user",
        "state",
        "break_glass",
    )
    number = _columns(MappingVersion, "number")["number"]
    version = f"(SELECT MAX({number}) FROM {_table(MappingVersion)})"  # noqa: S608
    picked = (
        f"g.{g['id']}, g.{g['account']}, g.{g['role']}, g.{g['ends_at']}, g.{g['request']}, "
        f"g.{g['break_glass']}"
    )
    active = (
        f"g.{g['user']} = %s AND g.{g['state']} = %s "
        f"AND g.{g['starts_at']} <= %s AND g.{g['ends_at']} > %s"
    )
    joined = f"(SELECT 1 AS one) o LEFT JOIN {_table(Grant)} g ON {active}"
    return f"SELECT {version}, {picked} FROM {joined}"  # noqa: S608


def current_version_and_grants(
    user_id: int | None, *, now: datetime
) -> tuple[int, list[tuple[Any, ...]]]:
    """One round trip: the mapping version, and (id, account pk, role pk, ends_at, request id,
    break_glass) of each grant of ``user_id`` active at ``now``."""
    with prepared_cursor() as cursor:
        cursor.execute(
            _version_and_grants_sql(), [user_id or 0, Grant.State.ACTIVE.value, now, now]
        )
        result = cursor.fetchall()
    version = int(result[0][0] or 0)
    grants = [row[1:] for row in result if row[1] is not None]
    return version, grants
