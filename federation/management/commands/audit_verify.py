"""`manage.py audit_verify`: recompute the audit hash chain; non-zero exit on tampering."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from federation.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exits non-zero and names the first bad event."

    def handle(self, *args: Any, **options: Any) -> None:
        status = verify_chain()
        if not status.ok:
            raise CommandError(
                f"audit chain broken at event #{status.first_bad_seq}: {status.problem} "
                f"(verified up to #{status.verified_up_to})"
            )
        self.stdout.write(f"audit chain intact: {status.verified_up_to} event(s) verified")
