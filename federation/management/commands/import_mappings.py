"""`manage.py import_mappings FILE [--dry-run] [--reason R] [--as ADMIN | --emergency]`.

Plans, then applies a mapping file. The file is the complete desired state (SPEC §3.3). The plan
printed is the plan applied: the apply is refused if the tables moved since it was computed. A
sensitive change is not applied by the shell alone: it becomes a draft another admin applies
(``--as``), or an audited ``--emergency`` (``federation/mappings/commands.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.input_guard import unsafe_character
from federation.management.lost_database import say_so_if_the_database_is_lost
from federation.mappings import (
    MappingConflict,
    MappingFileInvalid,
    RemovalRefused,
    apply_document,
    parse_document,
    plan_document,
)
from federation.mappings.commands import add_landing_arguments, land_change
from federation.models import DraftKind, MappingVersion
from federation.refusals import Refused

# MappingVersion.reason's column length.
REASON_MAX = 500


def read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc


class Command(BaseCommand):
    help = "Plan and apply a YAML mapping file (the complete desired state of the tables)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML mapping file, or - for standard input")
        parser.add_argument("--dry-run", action="store_true", help="print the plan only")
        parser.add_argument("--reason", default="", help="why, recorded with the version")
        add_landing_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        with say_so_if_the_database_is_lost("import_mappings"):
            self._handle(**options)

    def _handle(self, **options: Any) -> None:
        reason = options["reason"]
        # Judged before the plan, so a dry run refuses what the real import could not store.
        if len(reason) > REASON_MAX or unsafe_character(reason) is not None:
            raise CommandError(
                f"--reason must be at most {REASON_MAX} characters of text (no NUL, and valid "
                "Unicode)."
            )
        try:
            document = parse_document(read_text(options["file"]))
        except MappingFileInvalid as refusal:
            raise CommandError(f"{options['file']}: {refusal.message}") from refusal
        plan = plan_document(document)
        self.stdout.write(plan.render_text())
        if plan.blockers:
            raise CommandError(RemovalRefused(plan.blockers).message)
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing applied.")
            return
        now = timezone.now()
        try:
            landing = land_change(
                document,
                plan,
                apply=lambda emergency: apply_document(
                    document,
                    actor=cli_actor(),
                    source=MappingVersion.Source.IMPORT,
                    reason=reason,
                    base_version=plan.base_version,
                    now=now,
                    emergency=emergency,
                ),
                kind=DraftKind.IMPORT,
                summary=f"import of {Path(options['file']).name}",
                proposer=options["as_admin"],
                emergency=options["emergency"],
                reason=reason,
                now=now,
            )
        except (MappingConflict, RemovalRefused, Refused) as refusal:
            raise CommandError(refusal.message) from refusal
        self.stdout.write(landing.message)
