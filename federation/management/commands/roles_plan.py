"""`manage.py roles_plan [--account ID_OR_ALIAS ...] [--detailed-exitcode]` (SPEC §3.2).

Reads every selected account through the management role and prints what would be created,
changed or deleted. Changes nothing. With --detailed-exitcode: 0 in sync, 2 changes pending,
1 error (an account that cannot be read, or tables IAM would refuse).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from federation.provisioning.plan import plan_roles, render_text
from federation.refusals import Refused


class Command(BaseCommand):
    help = "Show how the IAM roles in each account differ from what the mapping tables call for."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            action="append",
            default=[],
            metavar="ID_OR_ALIAS",
            help="plan only this account (repeatable); default: every account",
        )
        parser.add_argument(
            "--detailed-exitcode",
            action="store_true",
            help="exit 0 when in sync, 2 when changes are pending, 1 on error",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            plan = plan_roles(options["account"])
        except Refused as refusal:
            raise CommandError(refusal.message) from refusal
        self.stdout.write(render_text(plan), ending="")
        for failed in plan.errors:
            self.stderr.write(f"account {failed.account.account_id}: {failed.error}")
        if plan.errors:
            raise CommandError(f"{len(plan.errors)} account(s) could not be read")
        if options["detailed_exitcode"] and plan.pending:
            sys.exit(2)
