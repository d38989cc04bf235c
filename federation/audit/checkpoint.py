"""Signed checkpoints of the audit chain head, published outside the database (SPEC §4 Audit).

A checkpoint is two objects in AUDIT_CHECKPOINT_URL, named so that they sort in chain order:

* ``<seq, 16 digits>-<UTC time>.json``: the signed statement, compact JSON with sorted keys:
  ``{"at", "hash", "key", "log", "previous", "seq", "version"}``: the head's sequence number and
  hash, when it was signed, the SHA-256 of the previous checkpoint's .json (null for the first)
  and the SHA-256 of the raw public key that signs;
* the same name with ``.sig``: the raw 64-byte Ed25519 signature over the .json bytes.

Standard tools check one: ``openssl pkeyutl -verify -pubin -inkey audit-checkpoint.pub -rawin
-in X.json -sigfile X.sig`` and ``sha256sum`` of the previous .json (docs/audit.md). Whoever
rewrites the database cannot rewrite these: ``audit_verify`` compares the chain with each.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from federation.audit.checkpoint_store import CheckpointStore, open_store
from federation.audit.sequencer import sequence_pending
from federation.models import AuditChainHead, AuditEvent
from federation.refusals import Refused

LOG_NAME = "fedaccess-audit"


class CheckpointKeyMisconfigured(Refused):
    code = "audit_checkpoint_key"
    status = 500
    title = "Audit signing key misconfigured"


def signing_key() -> Ed25519PrivateKey:
    """AUDIT_SIGNING_KEY: a PEM Ed25519 private key, or the path of a file holding one."""
    value = settings.AUDIT_SIGNING_KEY.strip()
    if not value:
        raise CheckpointKeyMisconfigured("AUDIT_SIGNING_KEY is not set")
    pem = value.encode() if value.startswith("-----BEGIN") else Path(value).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointKeyMisconfigured("AUDIT_SIGNING_KEY must be an Ed25519 private key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    name: str  # without .json / .sig
    body: bytes
    signature: bytes

    @property
    def statement(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def seq(self) -> int:
        return int(self.statement["seq"])

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def store() -> CheckpointStore:
    if not settings.AUDIT_CHECKPOINT_URL:
        raise CheckpointKeyMisconfigured("AUDIT_CHECKPOINT_URL is not set")
    return open_store(settings.AUDIT_CHECKPOINT_URL)


def published(target: CheckpointStore) -> list[str]:
    """Every checkpoint name (a .json or a .sig seen), in chain order."""
    return sorted({name.rsplit(".", 1)[0] for name in target.names() if "." in name})


def read(target: CheckpointStore, name: str) -> Checkpoint:
    return Checkpoint(name, target.read(name + ".json"), target.read(name + ".sig"))


def publish_checkpoint(*, now: datetime) -> Checkpoint:
    """Bring the chain up to date, then sign its head and publish it.

    Every event committed before this call is sequenced first (the sequencer lock is waited
    for, not skipped), so a checkpoint never leaves committed events out.
    """
    key = signing_key()
    target = store()
    sequence_pending(wait=True)
    head = AuditChainHead.objects.filter(pk=1).first()
    seq, head_hash = (head.seq, head.hash) if head else (0, "0" * 64)
    names = published(target)
    previous = read(target, names[-1]).digest if names else None
    at = now.astimezone(UTC)
    statement = {
        "version": 1,
        "log": LOG_NAME,
        "seq": seq,
        "hash": head_hash,
        "at": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "previous": previous,
        "key": key_id(key.public_key()),
    }
    body = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    name = f"{seq:016d}-{at:%Y%m%dT%H%M%S%f}Z"
    checkpoint = Checkpoint(name, body, key.sign(body))
    # The signature first: a .json is never visible without the .sig that proves it.
    target.write(name + ".sig", checkpoint.signature, now=at)
    target.write(name + ".json", body, now=at)
    return checkpoint


@dataclass(frozen=True)
class CheckpointReport:
    ok: bool
    checked: int
    problem: str = ""
    last_seq: int = 0


def verify_checkpoints(public_key: Ed25519PublicKey | None = None) -> CheckpointReport:
    """Check every published checkpoint, in order: its signature, its link to the one before,
    and that the stored chain holds its head (an event with that number and hash).

    The report names the first checkpoint that fails. The chain itself (every hash from the
    genesis up to each head) is ``verify_chain``'s part; together they prove the chain is the
    one that was signed.
    """
    key = public_key or signing_key().public_key()
    target = store()
    names = published(target)
    checkpoints: list[Checkpoint] = []
    for name in names:
        try:
            checkpoints.append(read(target, name))
        except Exception as exc:  # a missing half (OSError, S3 NoSuchKey): name it, no crash
            return CheckpointReport(
                False, len(checkpoints), f"checkpoint {name}: unreadable ({exc})"
            )
    wanted = {cp.seq for cp in checkpoints if _is_json(cp)}
    stored = dict(AuditEvent.objects.filter(seq__in=wanted).values_list("seq", "hash").iterator())
    previous: Checkpoint | None = None
    last_seq = 0
    for cp in checkpoints:
        problem = _check_one(cp, previous, key, stored)
        if problem:
            return CheckpointReport(False, len(checkpoints), f"checkpoint {cp.name}: {problem}")
        previous, last_seq = cp, cp.seq
    return CheckpointReport(True, len(checkpoints), last_seq=last_seq)


def _is_json(cp: Checkpoint) -> bool:
    try:
        return isinstance(cp.statement.get("seq"), int)
    except ValueError:
        return False


def _check_one(
    cp: Checkpoint,
    previous: Checkpoint | None,
    key: Ed25519PublicKey,
    stored: dict[int | None, str | None],
) -> str:
    try:
        key.verify(cp.signature, cp.body)
    except InvalidSignature:
        return "bad signature (edited, or not signed by the audit key)"
    statement = cp.statement
    expected_previous = previous.digest if previous else None
    if statement.get("previous") != expected_previous:
        return (
            f"does not follow {previous.name if previous else 'nothing'} "
            "(a checkpoint before it is missing or was replaced)"
        )
    seq, head_hash = int(statement["seq"]), statement["hash"]
    if previous is not None and seq < previous.seq:
        return f"head #{seq} is behind the previous checkpoint's #{previous.seq}"
    if seq == 0:
        return ""
    if seq not in stored:
        return f"the chain was truncated: event #{seq} signed here is missing"
    if stored[seq] != head_hash:
        return f"the chain was rewritten or forked: event #{seq} no longer has the signed hash"
    return ""


def checkpoint_when_due(*, now: datetime) -> Checkpoint | None:
    """Publish a checkpoint when the last one is AUDIT_CHECKPOINT_INTERVAL old, or sooner once
    AUDIT_CHECKPOINT_EVERY_EVENTS events were placed since (beat asks every few minutes)."""
    names = published(store())
    if names:
        last = read(store(), names[-1])
        signed_at = datetime.fromisoformat(str(last.statement["at"]).replace("Z", "+00:00"))
        head = AuditChainHead.objects.filter(pk=1).first()
        grown = (head.seq if head else 0) - last.seq
        if (
            now - signed_at < settings.AUDIT_CHECKPOINT_INTERVAL
            and grown < settings.AUDIT_CHECKPOINT_EVERY_EVENTS
        ):
            return None
    return publish_checkpoint(now=now)
