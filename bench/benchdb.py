"""A scratch PostgreSQL database for one benchmark, named after DATABASE_URL's database.

Call ``scratch_database()`` before Django is imported: it points DATABASE_URL (and the Django
settings module) at ``<name>_<suffix>``, which ``recreate()`` makes empty and ``drop()`` removes.
The benchmark's numbers then never depend on what a previous run or the test suite left behind.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    admin_url: str

    def recreate(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(self._drop_statement())
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        import psycopg
        from django.db import connections

        connections.close_all()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(self._drop_statement())

    def _drop_statement(self) -> sql.Composed:
        from psycopg import sql

        # Quoted as an identifier (the name comes from DATABASE_URL); FORCE ends sessions a
        # crashed earlier run left open, which would otherwise block the drop.
        return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))


def scratch_database(script: str, suffix: str) -> ScratchDatabase:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(f"{script} needs DATABASE_URL=postgres://... (PostgreSQL)")
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'fedaccess'}_{suffix}"
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + name))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "federation.settings")
    os.environ.setdefault("DEBUG", "1")
    return ScratchDatabase(name=name, admin_url=urlunsplit(parts._replace(path="/postgres")))
