"""`manage.py drift_check [--account ID_OR_ALIAS ...]` (SPEC §3.2): read reality, record and
print the drift per account and role. Exit 0 in sync, 2 drift found, 1 error."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.provisioning.drift import check_drift, render_text
from federation.refusals import Refused


class Command(BaseCommand):
    help = "Record and print how the IAM roles in each account drift from the mapping tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", action="append", default=[], metavar="ID_OR_ALIAS")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = check_drift(options["account"], now=timezone.now())
        except Refused as refusal:
            raise CommandError(refusal.message) from refusal
        self.stdout.write(render_text(report), ending="")
        if report.errors:
            raise CommandError("; ".join(report.errors))
        if report.open:
            sys.exit(2)
