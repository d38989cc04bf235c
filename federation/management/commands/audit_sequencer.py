"""`manage.py audit_sequencer`: place committed audit events in the hash chain (docs/audit.md)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from federation.audit.sequencer import sequence_pending


class Command(BaseCommand):
    help = (
        "Sequence pending audit events: once (--once), or in a loop every --interval seconds. "
        "Only one sequencer works at a time (a PostgreSQL advisory lock); others wait their turn."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="sequence what is pending, exit")
        parser.add_argument("--interval", type=float, default=0.2, help="seconds between runs")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(f"sequenced {sequence_pending()} event(s)")
            return
        try:
            while True:
                close_old_connections()
                if sequence_pending() == 0:
                    time.sleep(options["interval"])
        except KeyboardInterrupt:
            return
