"""Checkpoints in S3 (moto over HTTP): Object Lock retention, and versions that try to hide them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import override_settings
from django.utils import timezone

from federation.audit.chain import record_event
from federation.audit.checkpoint import publish_checkpoint, verify_checkpoints
from tests.aws import MotoServer

pytestmark = pytest.mark.django_db
BUCKET = "audit-checkpoints"


def _key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@pytest.fixture
def s3(aws: MotoServer) -> Iterator[object]:
    client = boto3.client("s3")
    with override_settings(
        AUDIT_SIGNING_KEY=_key(), AUDIT_CHECKPOINT_URL=f"s3://{BUCKET}/prod/audit"
    ):
        yield client


def _locked_bucket(client: object) -> None:
    client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)  # type: ignore[attr-defined]
    client.put_object_lock_configuration(  # type: ignore[attr-defined]
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
        },
    )


def test_checkpoints_in_a_locked_bucket_carry_compliance_retention(s3: object) -> None:
    _locked_bucket(s3)
    record_event("e", now=timezone.now(), actor="x")
    signed = publish_checkpoint(now=timezone.now())
    for suffix in (".json", ".sig"):
        head = s3.head_object(Bucket=BUCKET, Key=f"prod/audit/{signed.name}{suffix}")  # type: ignore[attr-defined]
        assert head["ObjectLockMode"] == "COMPLIANCE"
        days = (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).days
        assert 28 <= days <= 30
    assert verify_checkpoints().ok


def test_a_newer_version_or_delete_marker_does_not_hide_a_checkpoint(s3: object) -> None:
    _locked_bucket(s3)
    record_event("e", now=timezone.now(), actor="x")
    first = publish_checkpoint(now=timezone.now())
    record_event("e", now=timezone.now(), actor="y")
    second = publish_checkpoint(now=timezone.now())
    forged = first.body.replace(b'"seq":1', b'"seq":0')
    s3.put_object(Bucket=BUCKET, Key=f"prod/audit/{first.name}.json", Body=forged)  # type: ignore[attr-defined]
    s3.delete_object(Bucket=BUCKET, Key=f"prod/audit/{second.name}.json")  # type: ignore[attr-defined]
    s3.delete_object(Bucket=BUCKET, Key=f"prod/audit/{second.name}.sig")  # type: ignore[attr-defined]
    report = verify_checkpoints()
    assert report.ok and report.checked == 2 and report.last_seq == 2


def test_deleting_a_locked_checkpoint_version_is_refused(s3: object) -> None:
    _locked_bucket(s3)
    record_event("e", now=timezone.now(), actor="x")
    signed = publish_checkpoint(now=timezone.now())
    key = f"prod/audit/{signed.name}.json"
    version = s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]  # type: ignore[attr-defined]
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)  # type: ignore[attr-defined]


def test_a_bucket_without_object_lock_still_takes_checkpoints(s3: object) -> None:
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    record_event("e", now=timezone.now(), actor="x")
    signed = publish_checkpoint(now=timezone.now())
    head = s3.head_object(Bucket=BUCKET, Key=f"prod/audit/{signed.name}.sig")  # type: ignore[attr-defined]
    assert "ObjectLockMode" not in head
    assert verify_checkpoints().ok
