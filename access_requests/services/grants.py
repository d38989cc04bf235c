"""A grant's life after approval (SPEC §4, SECURITY.md §4-§5): revoke, expire, lost eligibility.

Transitions::

    grant: active -> expired | revoked (by an approver or admin, or ended early by its holder)

A revocation locks the grant and re-checks it (``services/locked.py``), commits, and then owes
the IAM deny on the holder's earlier sessions (``access_requests/revocation.py``), queued after
commit. Expiry also ends pending requests past their decision deadline, in the same sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from access_requests import tasks
from access_requests.approvers import may_revoke, may_see_grant, reloaded
from access_requests.models import AccessRequest, Grant, GrantState
from access_requests.notifications import RequestEvent
from access_requests.refusals import (
    GrantNotActive,
    NotAllowedToRevoke,
    NotTheHolder,
    RequestRefused,
)
from access_requests.services.effects import enqueue, notify
from access_requests.services.locked import change_locked, not_found
from access_requests.services.workflow import transition_request
from federation.audit.chain import record_event
from federation.entitlements.resolve import resolve_entitlements
from federation.models import User
from federation.observability import metrics

# --- Revoke ---------------------------------------------------------------------------------


def revoke_grant(
    grant: Grant | int,
    *,
    actor: User,
    now: datetime,
    reason: str = "",
    ip: str | None = None,
) -> Grant:
    """End an active grant now. Allowed to admins and to current approvers of its request.

    The grant is revoked (and unusable) as this transaction commits. The IAM deny policy for
    the holder's sessions issued before ``now`` is then put by a task; until IAM confirms it the
    grant's ``revocation_applied_at`` stays NULL and the sweep retries, so a failing IAM call
    delays the deny but never loses it. Raises ``GrantNotFound`` (unknown, or outside the
    actor's reach: the same answer), ``NotAllowedToRevoke`` or ``GrantNotActive`` (audited).
    """
    grant_id = grant if isinstance(grant, int) else grant.pk

    def check(locked: Grant) -> RequestRefused | None:
        current = reloaded(actor)
        if not may_see_grant(current, locked):
            return not_found("grant")
        if not may_revoke(current, locked):
            return NotAllowedToRevoke("Only an approver of this grant or an admin may revoke it.")
        if not locked.is_active_at(now):
            return GrantNotActive(f"Grant #{locked.pk} is already {_grant_state(locked, now)}.")
        return None

    def apply(locked: Grant, _: None) -> None:
        _revoke_locked(locked, actor=actor, now=now, reason=reason, ip=ip)

    return change_locked(
        Grant.objects.select_related(
            "user", "account", "role", "request__account__business_unit", "request__mapping"
        ),
        grant_id,
        check=check,
        apply=apply,
        refused_event="grant.revoke_refused",
        actor=actor,
        now=now,
        ip=ip,
    )


ENDED_BY_HOLDER = "ended early by its holder"


def end_grant(grant: Grant | int, *, actor: User, now: datetime, ip: str | None = None) -> Grant:
    """The holder ends their own active grant now: like a revocation (the grant is unusable as
    this commits, and the IAM deny on the sessions it issued is owed and retried until applied),
    audited as ``grant.ended``. Raises ``GrantNotFound`` (unknown, or outside the actor's
    reach), ``NotTheHolder`` (an approver or admin, who revoke instead) or ``GrantNotActive``."""
    grant_id = grant if isinstance(grant, int) else grant.pk

    def check(locked: Grant) -> RequestRefused | None:
        if not may_see_grant(actor, locked):
            return not_found("grant")
        # Exactly the identity that holds it: ending is a holder's act, never a twin's.
        if locked.user_id != actor.pk:
            return NotTheHolder(
                "Only the person holding a grant can end it early; approvers and admins revoke it."
            )
        if not locked.is_active_at(now):
            return GrantNotActive(f"Grant #{locked.pk} is already {_grant_state(locked, now)}.")
        return None

    def apply(locked: Grant, _: None) -> None:
        _revoke_locked(
            locked, actor=actor, now=now, reason=ENDED_BY_HOLDER, ip=ip, event="grant.ended"
        )

    return change_locked(
        Grant.objects.select_related("user", "account", "role", "request"),
        grant_id,
        check=check,
        apply=apply,
        refused_event="grant.end_refused",
        actor=actor,
        now=now,
        ip=ip,
    )


def _revoke_locked(
    grant: Grant,
    *,
    actor: User | str,
    now: datetime,
    reason: str,
    ip: str | None,
    event: str = "grant.revoked",
) -> None:
    grant.state = Grant.State.REVOKED
    grant.revoked_at = now
    grant.revoked_by = actor if isinstance(actor, User) else None
    grant.revoke_reason = reason[:500]
    grant.save(update_fields=["state", "revoked_at", "revoked_by", "revoke_reason"])
    record_event(
        event,
        actor=actor,
        account_id=grant.account.account_id,
        target=f"grant #{grant.pk}",
        ip=ip,
        now=now,
        data={
            "grant_id": grant.pk,
            "request_id": grant.request_id,
            "user": grant.user.label,
            "role_arn": grant.role_arn,
            "source_identity": grant.source_identity,
            "reason": reason,
            "before": {"state": Grant.State.ACTIVE},
            "after": {"state": Grant.State.REVOKED},
        },
    )
    metrics.record_grant_state(Grant.State.REVOKED)
    enqueue(tasks.apply_revocation_policy, grant.pk)


def revoke_grants_of(
    user: User,
    *,
    actor: str,
    now: datetime,
    reason: str,
    keys: set[tuple[str, str]] | None = None,
) -> list[Grant]:
    """Revoke ``user``'s active grants (only those on ``keys`` = (account id, role) when given),
    inside the caller's transaction: a directory leaver or mover (``federation.directory``).
    Each is locked, audited as ``grant.revoked`` with ``reason``, and owes its IAM deny as any
    revocation does (queued after commit, retried)."""
    locked = (
        Grant.objects.select_for_update(of=("self",))
        .select_related("user", "account", "role")
        .filter(user=user, state=Grant.State.ACTIVE, ends_at__gt=now)
        .order_by("pk")
    )
    revoked = []
    for grant in locked:
        if keys is not None and (grant.account.account_id, grant.role.name) not in keys:
            continue
        _revoke_locked(grant, actor=actor, now=now, reason=reason, ip=None)
        revoked.append(grant)
    return revoked


def revoke_lost_eligibility(*, now: datetime) -> int:
    """Revoke active grants whose holder is no longer eligible (a sign-in dropped the group).

    Entitlements already ignore such a grant, so no new session is issued; revoking it also
    denies the sessions issued before (SECURITY.md §5). Returns how many were revoked.
    """
    revoked = 0
    active = Grant.objects.filter(state=Grant.State.ACTIVE, ends_at__gt=now).select_related(
        "user", "account", "role"
    )
    by_user: dict[int, list[Grant]] = {}
    for grant in active.order_by("pk"):
        by_user.setdefault(grant.user_id, []).append(grant)
    for grants in by_user.values():
        user = grants[0].user
        # The memo is keyed on the mapping version and the group set, so the groups just read
        # here are never answered from a stale entry. A key still present means still eligible
        # (the grant stands) or now standing (a deny would cut those sessions too): keep it.
        entitled = {
            e.key for e in resolve_entitlements(user.directory_groups, now=now, user_id=user.pk)
        }
        for grant in grants:
            if (grant.account.account_id, grant.role.name) in entitled:
                continue
            with transaction.atomic(durable=True):
                locked = (
                    Grant.objects.select_for_update(of=("self",))
                    .select_related("user", "account")
                    .filter(pk=grant.pk, state=Grant.State.ACTIVE)
                    .first()
                )
                if locked is None:
                    continue
                _revoke_locked(
                    locked, actor="system", now=now, reason="holder no longer eligible", ip=None
                )
            revoked += 1
    return revoked


def _grant_state(grant: Grant, now: datetime) -> GrantState:
    if grant.state == Grant.State.ACTIVE and grant.ends_at <= now:
        return Grant.State.EXPIRED
    return Grant.State(grant.state)


# --- Expire ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryReport:
    requests_expired: int
    grants_expired: int


_EXPIRY_BATCH = 200


def expire_due(*, now: datetime) -> ExpiryReport:
    """Expire pending requests past their decision deadline and active grants past their end.

    Rows another transaction holds (a decision in flight) are skipped and caught next run.
    Entitlements ignore grants past ``ends_at`` anyway, so a late run never extends access.
    """
    requests_expired = grants_expired = 0
    while True:
        with transaction.atomic(durable=True):
            due_requests = list(
                AccessRequest.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("account")
                .filter(state=AccessRequest.State.PENDING, decide_by__lte=now)
                .order_by("decide_by")[:_EXPIRY_BATCH]
            )
            for access_request in due_requests:
                transition_request(
                    access_request, AccessRequest.State.EXPIRED, actor="system", now=now, ip=None
                )
                notify(access_request.pk, RequestEvent.EXPIRED)
            due_grants = list(
                Grant.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("account")
                .filter(state=Grant.State.ACTIVE, ends_at__lte=now)
                .order_by("ends_at")[:_EXPIRY_BATCH]
            )
            for grant in due_grants:
                grant.state = Grant.State.EXPIRED
                grant.save(update_fields=["state"])
                record_event(
                    "grant.expired",
                    actor="system",
                    account_id=grant.account.account_id,
                    target=f"grant #{grant.pk}",
                    now=now,
                    data={
                        "grant_id": grant.pk,
                        "request_id": grant.request_id,
                        "ends_at": grant.ends_at,
                        "before": {"state": Grant.State.ACTIVE},
                        "after": {"state": Grant.State.EXPIRED},
                    },
                )
                metrics.record_grant_state(Grant.State.EXPIRED)
        requests_expired += len(due_requests)
        grants_expired += len(due_grants)
        if len(due_requests) < _EXPIRY_BATCH and len(due_grants) < _EXPIRY_BATCH:
            return ExpiryReport(requests_expired, grants_expired)
