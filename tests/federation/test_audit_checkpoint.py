"""Signed checkpoints: a database superuser who rewrites the chain is caught by them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from federation.audit.chain import record_event, verify_chain
from federation.audit.checkpoint import (
    checkpoint_when_due,
    publish_checkpoint,
    verify_checkpoints,
)
from federation.audit.hashing import GENESIS_HASH, canonical_record, chain_hash
from federation.models import AuditEvent

pytestmark = pytest.mark.django_db


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "checkpoints"
    with override_settings(
        AUDIT_SIGNING_KEY=_pem(Ed25519PrivateKey.generate()),
        AUDIT_CHECKPOINT_URL=f"file://{directory}",
    ):
        yield directory


def _events(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        record_event("e", now=timezone.now(), actor="x", data={"i": i})


def _as_superuser(*statements: tuple[str, list[object]]) -> None:
    """What a database superuser can do: switch the trigger off, then write anything."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE federation_auditevent DISABLE TRIGGER USER")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("ALTER TABLE federation_auditevent ENABLE TRIGGER USER")


def _rehash_from(seq: int) -> None:
    """Recompute every hash from ``seq`` on and move the head: a forger who knows the format."""
    prev = GENESIS_HASH if seq == 1 else AuditEvent.objects.get(seq=seq - 1).hash
    statements: list[tuple[str, list[object]]] = []
    for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        assert event.seq is not None and prev is not None
        digest = chain_hash(
            prev,
            canonical_record(
                seq=event.seq,
                at=event.at,
                event_type=event.event_type,
                actor=event.actor,
                account_id=event.account_id,
                target=event.target,
                ip=event.ip,
                data=event.data,
            ),
        )
        statements.append(
            (
                "UPDATE federation_auditevent SET prev_hash = %s, hash = %s WHERE seq = %s",
                [prev, digest, event.seq],
            )
        )
        prev = digest
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    statements.append(("UPDATE federation_auditchainhead SET seq = %s, hash = %s", [last, prev]))
    _as_superuser(*statements)


def test_checkpoints_chain_and_verify(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _events(3)
    first = publish_checkpoint(now=timezone.now())
    _events(2, start=3)
    second = publish_checkpoint(now=timezone.now())
    assert (first.seq, second.seq) == (3, 5)
    assert second.statement["previous"] == first.digest
    assert first.statement["previous"] is None
    assert sorted(p.name for p in store.iterdir()) == sorted(
        [f"{first.name}.json", f"{first.name}.sig", f"{second.name}.json", f"{second.name}.sig"]
    )
    call_command("audit_verify", "--jobs", "1")
    assert "2 checkpoint(s) hold, the last at event #5" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_superuser_truncating_the_tail_and_rewriting_the_head_is_caught(store: Path) -> None:
    _events(5)
    signed = publish_checkpoint(now=timezone.now())
    _events(3, start=5)
    kept = AuditEvent.objects.get(seq=3)
    _as_superuser(
        ("DELETE FROM federation_auditevent WHERE seq > 3", []),
        ("UPDATE federation_auditchainhead SET seq = 3, hash = %s", [kept.hash]),
    )
    assert verify_chain().ok  # the chain alone cannot tell
    report = verify_checkpoints()
    assert not report.ok
    assert signed.name in report.problem and "truncated" in report.problem
    with pytest.raises(CommandError, match=f"checkpoint {signed.name}: the chain was truncated"):
        call_command("audit_verify", "--jobs", "1")


@pytest.mark.django_db(transaction=True)
def test_superuser_rewriting_an_event_and_every_hash_after_it_is_caught(store: Path) -> None:
    _events(4)
    signed = publish_checkpoint(now=timezone.now())
    _as_superuser(("UPDATE federation_auditevent SET actor = 'nobody' WHERE seq = 2", []))
    _rehash_from(2)
    assert verify_chain().ok
    with pytest.raises(CommandError, match=f"checkpoint {signed.name}: the chain was rewritten"):
        call_command("audit_verify", "--jobs", "1")


def test_a_removed_or_edited_checkpoint_is_named(store: Path) -> None:
    _events(1)
    first = publish_checkpoint(now=timezone.now())
    _events(1, start=1)
    second = publish_checkpoint(now=timezone.now())
    _events(1, start=2)
    third = publish_checkpoint(now=timezone.now())

    body = (store / f"{third.name}.json").read_bytes()
    (store / f"{third.name}.json").write_bytes(body.replace(b'"seq":3', b'"seq":2'))
    assert f"checkpoint {third.name}: bad signature" in verify_checkpoints().problem
    (store / f"{third.name}.json").write_bytes(body)

    (store / f"{second.name}.json").unlink()
    (store / f"{second.name}.sig").unlink()
    report = verify_checkpoints()
    assert f"checkpoint {third.name}: does not follow {first.name}" in report.problem


def test_checkpoint_first_places_every_committed_event(store: Path) -> None:
    with override_settings(AUDIT_SEQUENCING="batched"):
        _events(4)
        assert AuditEvent.objects.filter(seq__isnull=True).count() == 4
        signed = publish_checkpoint(now=timezone.now())
    assert signed.seq == 4
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    assert verify_checkpoints().ok


def test_a_checkpoint_is_due_after_the_interval_or_enough_events(store: Path) -> None:
    now = timezone.now()
    assert checkpoint_when_due(now=now) is not None  # none yet
    _events(2)
    assert checkpoint_when_due(now=now + timedelta(minutes=5)) is None
    with override_settings(AUDIT_CHECKPOINT_EVERY_EVENTS=2):
        assert checkpoint_when_due(now=now + timedelta(minutes=6)) is not None
    assert checkpoint_when_due(now=now + timedelta(minutes=7)) is None
    assert checkpoint_when_due(now=now + timedelta(hours=2)) is not None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_an_auditor_verifies_a_checkpoint_with_openssl(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(2)
    signed = publish_checkpoint(now=timezone.now())
    call_command("audit_checkpoint", "--public-key")
    public = tmp_path / "audit-checkpoint.pub"
    public.write_text(capsys.readouterr().out)
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin"]
    good = subprocess.run(
        [*command, "-in", str(store / f"{signed.name}.json"), "-sigfile",
         str(store / f"{signed.name}.sig")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert good.returncode == 0 and "Signature Verified Successfully" in good.stdout
    forged = tmp_path / "forged.json"
    forged.write_bytes((store / f"{signed.name}.json").read_bytes().replace(b'"seq":2', b'"seq":9'))
    bad = subprocess.run(
        [*command, "-in", str(forged), "-sigfile", str(store / f"{signed.name}.sig")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0


def test_checkpoint_refuses_to_run_without_a_key(tmp_path: Path) -> None:
    with (
        override_settings(AUDIT_SIGNING_KEY="", AUDIT_CHECKPOINT_URL=f"file://{tmp_path}"),
        pytest.raises(CommandError, match="AUDIT_SIGNING_KEY is not set"),
    ):
        call_command("audit_checkpoint")
