"""The resolver's two database reads, as raw SQL built from the models.

Raw on purpose: they are the hot path of every portal page, API call and issuance. One round
trip answers both the mapping version and a person's active grants (about 0.3 ms warm; the
same through two ORM queries took 1.3-2 ms, bench/entitlements.py "warm+user"), and the
mapping rows come back with their JSON scope columns as text, parsed once per distinct value.
Both are prepared statements, bound server-side (``_prepared_cursor``).
Tables, columns and the grant state all come from the models, so a rename there cannot leave
these queries behind; identifiers come only from the models, and every value is a bound
parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field, Model

from access_requests.models import Grant
from federation.models import GroupMapping, MappingVersion


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


class _PreparedCursor(psycopg.Cursor[Any]):
    """Server-side binding, prepared on first use in a connection: the array of a person's
    groups goes as one bound parameter (not a 1,000-literal string built in Python) and
    PostgreSQL plans the statement once per connection, not on every call."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: Any = None
    ) -> Any:
        return super().execute(query, params, prepare=True, binary=binary)


class _PreparedDebugWrapper(CursorDebugWrapper):
    """Logs a prepared statement by its text: psycopg keeps no query text to show for one
    executed by name, and Django's wrapper would log None (tests count queries by text)."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)


_ONLY_WHEN_ASKED = 2**31 - 1


def _prepared_cursor() -> CursorWrapper:
    """A cursor of Django's connection whose statements are bound and prepared server-side,
    through Django's cursor wrappers, so query logging and execute wrappers still see them."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    pg = connection.connection
    if pg.prepare_threshold is None:
        # Django leaves psycopg's threshold unset, and then psycopg ignores prepare=True too. A
        # threshold no query reaches prepares only the statements asked for: these two (Django's
        # own queries are bound client-side, and those are never prepared).
        pg.prepare_threshold = _ONLY_WHEN_ASKED
    wrapper = _PreparedDebugWrapper if connection.queries_logged else CursorWrapper
    return wrapper(_PreparedCursor(pg), connection)


def fetch_mapping_rows(groups: Sequence[str]) -> list[tuple[Any, ...]]:
    """(group, role id, business unit id, environments, accounts, access, max grant) of every
    mapping row of ``groups``, through the group index."""
    select = _mapping_rows_sql()
    with _prepared_cursor() as cursor:
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
    with _prepared_cursor() as cursor:
        cursor.execute(
            _version_and_grants_sql(), [user_id or 0, Grant.State.ACTIVE.value, now, now]
        )
        result = cursor.fetchall()
    version = int(result[0][0] or 0)
    grants = [row[1:] for row in result if row[1] is not None]
    return version, grants
