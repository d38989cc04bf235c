"""`manage.py audit_checkpoint`: sign the audit chain head and publish it (docs/audit.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.audit.checkpoint import public_key_pem, publish_checkpoint, signing_key
from federation.refusals import Refused


class Command(BaseCommand):
    help = (
        "Sequence every committed audit event, then sign the chain head (Ed25519, "
        "AUDIT_SIGNING_KEY) and publish it to AUDIT_CHECKPOINT_URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--public-key",
            action="store_true",
            help="print the PEM public key auditors verify checkpoints with, and exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["public_key"]:
                self.stdout.write(public_key_pem(signing_key().public_key()), ending="")
                return
            checkpoint = publish_checkpoint(now=timezone.now())
        except Refused as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"checkpoint {checkpoint.name}: head #{checkpoint.seq} "
            f"{checkpoint.statement['hash']} published"
        )
