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

``columns`` and ``instance``: a SELECT written once instead of compiled by the ORM on every
call (the compile cost more CPU than the query on the ACS), read back into model instances
exactly as the ORM would (each field's ``from_db_value``, e.g. JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from django.db import connection
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
    """The ``model`` instance for ``row``, read by ``columns(model, ...)``."""
    fields = model._meta.concrete_fields
    values = [
        field.from_db_value(value, None, connection)
        if value is not None and hasattr(field, "from_db_value")
        else value
        for field, value in zip(fields, row, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], values)
