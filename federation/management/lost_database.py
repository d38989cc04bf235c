"""What a mapping command says when it loses its database (issue #17): one line, exit 1.

The import and the rollback each apply in one transaction, so a connection lost before the
commit applied nothing; the file (or version) is the complete desired state, so running the
command again is safe either way (a run that did commit plans "no changes" the second time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import InterfaceError, OperationalError


@contextmanager
def say_so_if_the_database_is_lost(command: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        cause = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CommandError(
            f"{command}: lost the database ({cause}); nothing was applied, and it is safe to "
            "run the same command again."
        ) from None
