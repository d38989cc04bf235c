"""Hand-written SQL on the hot paths (the sign-in): several statements in one round trip to
PostgreSQL, and model instances read from a hand-written SELECT.

``pipelined``: psycopg's pipeline mode.

A hot path that runs a handful of statements in one transaction (the sign-in) waits for the
server once per statement; inside ``pipelined()`` psycopg sends them without waiting and reads
the answers together when a result is fetched or at the end of the block. Rules for code inside:

* a statement's ``rowcount`` is not known until the answers are read: call the ``sync`` the
  block yields (or leave the block) before reading it, and never call ORM methods that read it
  (``QuerySet.update``, ``delete``) inside;
* an error surfaces at the next fetch or sync, not at the statement; the enclosing
  ``transaction.atomic`` rolls everything back as usual.

Anything but PostgreSQL with a libpq that has pipelines runs the same code one statement at a
time.

``prepared_cursor``: statements bound and prepared server-side, planned once per connection
(the resolver's reads, the session's user, the approver scope: every portal page).

``columns`` and ``instance``: a SELECT written once instead of compiled by the ORM on every
call (the compile cost more CPU than the query on the ACS), read back into model instances
exactly as the ORM would (each field's ``from_db_value``, e.g. JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Model


def _nothing() -> None:
    return None


@contextmanager
def pipelined() -> Iterator[Callable[[], None]]:
    """Pipeline the statements run inside; yields ``sync``, which waits for every answer."""
    if connection.vendor != "postgresql" or not psycopg.Pipeline.is_supported():
        yield _nothing
        return
    connection.ensure_connection()
    with connection.connection.pipeline() as pipeline:
        yield pipeline.sync


M = TypeVar("M", bound=Model)


def columns(model: type[Model], alias: str) -> str:
    """``alias.col1, alias.col2, ...``: every concrete column of ``model``, in field order."""
    return ", ".join(f"{alias}.{field.column}" for field in model._meta.concrete_fields)


def instance(model: type[M], row: Sequence[Any]) -> M:
    """The ``model`` instance for ``row``, read by ``columns(model, ...)``: each value passes
    the converters the ORM would apply (the database backend's, e.g. SQLite's datetimes, and
    the field's ``from_db_value``, e.g. JSON)."""
    attnames, converters = _reading(model, connection.vendor)
    values = []
    for value, (col, steps) in zip(row, converters, strict=True):
        for convert in steps:
            value = convert(value, col, connection)
        values.append(value)
    return model.from_db(connection.alias, attnames, values)


@cache
def _reading(model: type[Model], vendor: str) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    """What ``instance`` needs of ``model``, worked out once per process (it runs on every page:
    the session's user): the attribute names, and each column with its converters."""
    fields = model._meta.concrete_fields
    converters = []
    for field in fields:
        col = field.get_col(model._meta.db_table)
        converters.append(
            (col, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
        )
    return [f.attname for f in fields], converters


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


def prepared_cursor() -> CursorWrapper:
    """A cursor of Django's connection whose statements are bound and prepared server-side,
    through Django's cursor wrappers, so query logging and execute wrappers still see them."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.ensure_connection()
    pg = connection.connection
    if pg.prepare_threshold is None:
        # Django leaves psycopg's threshold unset, and then psycopg ignores prepare=True too. A
        # threshold no query reaches prepares only the statements asked for: those run through
        # here (Django's own queries are bound client-side, and those are never prepared).
        pg.prepare_threshold = _ONLY_WHEN_ASKED
    wrapper = _PreparedDebugWrapper if connection.queries_logged else CursorWrapper
    return wrapper(_PreparedCursor(pg), connection)
