"""`manage.py audit_verify`: recompute the audit hash chain; non-zero exit on tampering."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from federation.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exits non-zero and names the first bad event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--jobs",
            type=int,
            default=min(os.cpu_count() or 1, 4),
            help="processes checking ranges of the chain in parallel (default: cores, up to 4)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        status = verify_chain(jobs=max(options["jobs"], 1))
        if not status.ok:
            raise CommandError(
                f"audit chain broken at event #{status.first_bad_seq}: {status.problem} "
                f"(verified up to #{status.verified_up_to})"
            )
        self.stdout.write(f"audit chain intact: {status.verified_up_to} event(s) verified")
