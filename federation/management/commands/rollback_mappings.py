"""`manage.py rollback_mappings VERSION [--dry-run] [--reason R] [--as ADMIN | --emergency]`.

Restores an earlier version: the restored document is applied as a new version (source
"rollback"), planned and audited like any import; history is never rewritten. A sensitive
rollback follows the same two-person rule as an import (``federation/mappings/commands.py``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.management.lost_database import say_so_if_the_database_is_lost
from federation.mappings import (
    RemovalRefused,
    get_version_document,
    plan_document,
    rollback_to_version,
)
from federation.mappings.commands import add_landing_arguments, land_change
from federation.models import DraftKind
from federation.refusals import Refused


class Command(BaseCommand):
    help = "Plan, then restore the mapping tables to an earlier version (as a new version)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", type=int, help="the mapping version number to restore")
        parser.add_argument("--dry-run", action="store_true", help="print the plan only")
        parser.add_argument("--reason", default="", help="why, recorded with the version")
        add_landing_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        with say_so_if_the_database_is_lost("rollback_mappings"):
            self._handle(**options)

    def _handle(self, **options: Any) -> None:
        number = options["version"]
        try:
            document = get_version_document(number)
            plan = plan_document(document)
            self.stdout.write(plan.render_text())
            if plan.blockers:
                raise RemovalRefused(plan.blockers)
            if options["dry_run"]:
                self.stdout.write("Dry run: nothing applied.")
                return
            now = timezone.now()
            landing = land_change(
                document,
                plan,
                apply=lambda emergency: rollback_to_version(
                    number,
                    actor=cli_actor(),
                    reason=options["reason"],
                    base_version=plan.base_version,
                    now=now,
                    emergency=emergency,
                ),
                kind=DraftKind.ROLLBACK,
                summary=f"rollback to version {number}",
                proposer=options["as_admin"],
                emergency=options["emergency"],
                reason=options["reason"],
                now=now,
            )
        except Refused as refusal:
            raise CommandError(refusal.message) from refusal
        self.stdout.write(landing.message)
