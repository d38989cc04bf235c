"""The IAM part of a leaver or mover (``leavers.py``): deny the sessions already issued.

Runs after the SCIM request's transaction has committed, from an outbox effect task
(``access_requests.tasks.apply_identity_deny``), and is retried until IAM accepts the deny:
``IdentityDeny.applied_at`` stays NULL until then, and the outbox re-queues the task if its
retries run out. Uses the per-person revocation policy and the per-role lock of grant
revocation (``access_requests.revocation``), so the two never overwrite each other's statements.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from access_requests.revocation import RevocationPolicyFailed, serialised_per_role
from federation.audit.chain import record_event
from federation.aws import iam
from federation.models import IdentityDeny


def apply_identity_deny(deny_id: int, *, now: datetime) -> IdentityDeny:
    """Put the deny ``deny_id`` owes; idempotent. On IAM failure audits
    ``directory.deny_failed`` and raises ``RevocationPolicyFailed`` (the task retries)."""
    deny = IdentityDeny.objects.select_related("leaver").get(pk=deny_id)
    if deny.applied_at is not None:
        return deny
    cause = {"leaver": deny.leaver_id, "scim_request": deny.leaver.scim_request_id}
    try:
        with serialised_per_role(deny.role_arn):
            iam.put_revocation_policy(
                deny.role_arn,
                source_identity=deny.source_identity,
                issued_before=deny.issued_before,
                now=now,
            )
    except (iam.IamCallFailed, ValueError) as exc:
        with transaction.atomic(durable=True):
            record_event(
                "directory.deny_failed",
                actor="system",
                account_id=deny.account_id,
                target=f"identity-deny #{deny.pk}",
                now=now,
                data={**cause, "role_arn": deny.role_arn, "error": str(exc)[:500]},
            )
        raise RevocationPolicyFailed(str(exc)) from exc
    with transaction.atomic(durable=True):
        if IdentityDeny.objects.filter(pk=deny.pk, applied_at__isnull=True).update(applied_at=now):
            record_event(
                "directory.deny_applied",
                actor="system",
                account_id=deny.account_id,
                target=f"identity-deny #{deny.pk}",
                now=now,
                data={
                    **cause,
                    "role_arn": deny.role_arn,
                    "policy": iam.POLICY_NAME,
                    "source_identity": deny.source_identity,
                    "issued_before": deny.issued_before,
                },
            )
    deny.applied_at = now
    return deny
