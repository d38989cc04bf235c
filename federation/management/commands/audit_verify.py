"""`manage.py audit_verify`: recompute the audit hash chain and check it against every signed
checkpoint; non-zero exit on tampering, naming the first bad event or the checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from federation.audit.chain import verify_chain
from federation.audit.checkpoint import verify_checkpoints
from federation.refusals import Refused


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain and every published checkpoint; exits non-zero and "
        "names the first bad event or the checkpoint the chain contradicts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--jobs",
            type=int,
            default=min(os.cpu_count() or 1, 4),
            help="processes checking ranges of the chain in parallel (default: cores, up to 4)",
        )
        parser.add_argument(
            "--public-key",
            type=Path,
            help="PEM Ed25519 public key of the checkpoints (default: AUDIT_SIGNING_KEY's)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Checkpoints first: after a rewrite of the whole database the chain verifies on its
        # own, and only a checkpoint can say what was lost.
        problems = []
        summary = "no checkpoints (AUDIT_CHECKPOINT_URL unset)"
        if settings.AUDIT_CHECKPOINT_URL:
            try:
                report = verify_checkpoints(_public_key(options["public_key"]))
            except Refused as exc:
                raise CommandError(exc.message) from exc
            if not report.ok:
                problems.append(report.problem)
            summary = f"{report.checked} checkpoint(s) hold, the last at event #{report.last_seq}"
        status = verify_chain(jobs=max(options["jobs"], 1))
        if not status.ok:
            problems.append(
                f"audit chain broken at event #{status.first_bad_seq}: {status.problem} "
                f"(verified up to #{status.verified_up_to})"
            )
        if problems:
            raise CommandError("; ".join(problems))
        self.stdout.write(
            f"audit chain intact: {status.verified_up_to} event(s) verified; {summary}"
        )


def _public_key(path: Path | None) -> Ed25519PublicKey | None:
    if path is None:
        return None
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise CommandError(f"{path} is not an Ed25519 public key")
    return key
