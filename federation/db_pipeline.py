"""Several statements in one round trip to PostgreSQL (psycopg's pipeline mode).

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


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
