"""The IAM deny a revoked grant owes (SECURITY.md §4): put it, and collect it once it is moot.

A revoked grant is unusable as its transaction commits; the deny on the role stops the sessions
issued before that moment. ``Grant.revocation_applied_at`` stays NULL until IAM accepts the deny,
so a failing call delays it but never loses it (the sweep retries). IAM has no conditional
write, so every read-modify-write of one role's policy runs under a PostgreSQL advisory lock.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import connection, transaction

from access_requests.approvers import source_identity_for
from access_requests.models import Grant
from federation.audit.chain import record_event
from federation.aws import iam
from federation.aws.names import IdentityNotExpressible
from federation.models import MAX_SESSION, IdentityDeny


class RevocationPolicyFailed(Exception):
    """The IAM deny policy for a revoked grant could not be put; the grant stays revoked and the
    policy stays owed (``Grant.revocation_applied_at`` is NULL) until a retry succeeds.

    Not a ``Refused``: no person or API client ever sees it. Only the task that puts the deny
    raises it, after the revocation has committed and been answered; Celery retries on it, and
    the failure is audited as ``grant.revocation_policy_failed`` with the peer's error.
    """


@contextmanager
def serialised_per_role(role_arn: str) -> Iterator[None]:
    """IAM has no conditional write: two read-modify-writes of one role's policy must not overlap.
    A PostgreSQL session advisory lock keyed on the ARN serialises them across workers."""
    if connection.vendor != "postgresql":
        yield
        return
    key = zlib.crc32(role_arn.encode()) - 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def apply_revocation_policy(grant_id: int, *, now: datetime) -> Grant:
    """Put the deny policy owed by a revoked grant; idempotent.

    On IAM failure, audits ``grant.revocation_policy_failed`` and raises
    ``RevocationPolicyFailed`` (the caller retries); the grant stays revoked either way.
    """
    grant = Grant.objects.select_related("account", "user").get(pk=grant_id)
    if grant.state != Grant.State.REVOKED or grant.revocation_applied_at is not None:
        return grant
    assert grant.revoked_at is not None
    role_arn = grant.role_arn or grant.account.default_role_arn(grant.role.name)
    try:
        source_identity = grant.source_identity or source_identity_for(grant.user)
        with serialised_per_role(role_arn):
            iam.put_revocation_policy(
                role_arn, source_identity=source_identity, issued_before=grant.revoked_at, now=now
            )
    except (iam.IamCallFailed, IdentityNotExpressible, ValueError) as exc:
        with transaction.atomic(durable=True):
            record_event(
                "grant.revocation_policy_failed",
                actor="system",
                account_id=grant.account.account_id,
                target=f"grant #{grant.pk}",
                now=now,
                data={"grant_id": grant.pk, "role_arn": role_arn, "error": str(exc)[:500]},
            )
        raise RevocationPolicyFailed(str(exc)) from exc
    with transaction.atomic(durable=True):
        updated = Grant.objects.filter(pk=grant.pk, revocation_applied_at__isnull=True).update(
            revocation_applied_at=now
        )
        if updated:
            record_event(
                "grant.revocation_policy_applied",
                actor="system",
                account_id=grant.account.account_id,
                target=f"grant #{grant.pk}",
                now=now,
                data={
                    "grant_id": grant.pk,
                    "role_arn": role_arn,
                    "policy": iam.POLICY_NAME,
                    "source_identity": source_identity,
                    "issued_before": grant.revoked_at,
                },
            )
    grant.revocation_applied_at = now
    return grant


def collect_revocation_policies(*, now: datetime) -> int:
    """Drop deny statements no live session can match, on every role revoked from recently."""
    since = now - 2 * MAX_SESSION
    arns = set(
        Grant.objects.filter(state=Grant.State.REVOKED, revoked_at__gte=since)
        .exclude(role_arn="")
        .values_list("role_arn", flat=True)
    )
    # Directory leavers' denies (federation/directory/denies.py) share the policy.
    arns |= set(
        IdentityDeny.objects.filter(created_at__gte=since).values_list("role_arn", flat=True)
    )
    removed = 0
    for role_arn in sorted(arns):
        with serialised_per_role(role_arn):
            removed += iam.collect_expired_revocations(role_arn, now=now)
    return removed
