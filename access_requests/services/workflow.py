"""Every state change of requests and grants (SPEC §4 Requests, SECURITY.md §4-§5): one module.

Transitions::

    request: pending -> approved | denied | cancelled | expired
    grant:   active  -> expired | revoked   (a grant is born active when its request is approved)

Each transition runs in one durable transaction that locks the row it changes
(``SELECT ... FOR UPDATE``), re-checks the state under the lock and writes an audit event with
the state before and after. The unique grant per request is the database's last line against a
double grant. Side effects (mail, webhook, the IAM deny policy) are queued with
``transaction.on_commit`` so they never run for a change that rolled back, and their failure
never undoes the change. Refusals are audited too, then raised as ``RequestRefused`` subclasses
(``access_requests/refusals.py``) whose message is fit to show to the person. Who may act lives
in ``approvers.py``, read-only queries for the pages in ``queries.py``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import Retry
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from access_requests.approvers import (
    approver_groups_for,
    is_approver,
    list_approvers,
    may_revoke,
    reloaded,
    same_person,
    source_identity_for,
)
from access_requests.models import AccessRequest, Approval, Grant
from access_requests.refusals import (
    AlreadyDecided,
    AlreadyGranted,
    DuplicateRequest,
    DurationOutOfBounds,
    GrantNotActive,
    JustificationRequired,
    NotAllowedToRevoke,
    NotAnApprover,
    NotEligible,
    NotTheRequester,
    RequesterNotEligible,
    RequestNotPending,
    RequestRefused,
    RevocationPolicyFailed,
    SelfApprovalRefused,
)
from federation.audit.chain import record_event, record_refusal
from federation.aws import iam
from federation.aws.names import IdentityNotExpressible
from federation.entitlements.resolve import Entitlement, find_entitlement, resolve_entitlements
from federation.entitlements.scope import accounts_reached
from federation.models import (
    MAX_SESSION,
    MIN_SESSION,
    Access,
    Account,
    GroupMapping,
    LogicalRole,
    User,
)

logger = logging.getLogger(__name__)

State = AccessRequest.State
Decision = Approval.Decision


# --- Submit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlacedAccount:
    account_id: str
    business_unit: str
    environment: str


def _eligible_mapping(
    account: Account, entitlement: Entitlement, role_name: str
) -> GroupMapping | None:
    """The eligible row behind the entitlement whose max grant is the cap (longest, then first)."""
    # The rows are already of the account's business unit; the scope rule has one home.
    rows = GroupMapping.objects.filter(
        group__in=list(entitlement.via),
        role__name=role_name,
        business_unit_id=account.business_unit_id,
        access=Access.ELIGIBLE,
    ).order_by("pk")
    placed = _PlacedAccount(account.account_id, account.business_unit.slug, account.environment)
    reaching = [
        row
        for row in rows
        if accounts_reached(
            placed.business_unit,
            row.environments,
            row.accounts,
            accounts_by_id={placed.account_id: placed},
            accounts_of_unit={placed.business_unit: (placed,)},
        )
    ]
    if not reaching:
        return None
    return max(reaching, key=lambda row: (row.max_grant or timedelta(0), -row.pk))


def submit_request(
    requester: User,
    *,
    account_id: str,
    role: str,
    justification: str,
    duration: timedelta,
    ticket: str = "",
    now: datetime,
    ip: str | None = None,
) -> AccessRequest:
    """File a request for (account, role). Allowed only through an eligible mapping the requester
    holds now, with a justification and ``15 min <= duration <= the mapping's max grant``.

    The request is flagged ``unapprovable`` when fewer people than the account's threshold can
    decide it. Approvers are notified after commit. Raises a ``RequestRefused`` (audited).
    """
    justification = justification.strip()
    target = f"{account_id}/{role}"
    refusal: RequestRefused | None = None
    entitlement = find_entitlement(
        requester.directory_groups, account_id, role, now=now, user_id=requester.pk
    )
    account = Account.objects.select_related("business_unit").filter(account_id=account_id).first()
    if not justification:
        refusal = JustificationRequired("A justification is required.")
    elif entitlement is None or account is None:
        refusal = NotEligible(f"You are not eligible to request {role} in account {account_id}.")
    elif entitlement.access == "standing":
        refusal = NotEligible(
            f"You already hold {role} in {entitlement.account_alias} as standing access; "
            "there is nothing to request."
        )
    elif entitlement.access == "grant":
        refusal = AlreadyGranted(
            f"You already have an active grant of {role} in {entitlement.account_alias}."
        )
    elif entitlement.max_grant is None or duration > entitlement.max_grant:
        cap = int((entitlement.max_grant or timedelta(0)).total_seconds() // 60)
        refusal = DurationOutOfBounds(f"The longest grant for this role is {cap} minutes.")
    elif duration < MIN_SESSION:
        refusal = DurationOutOfBounds("A grant lasts at least 15 minutes.")
    if refusal is not None:
        record_refusal(
            "access_request.refused",
            refusal,
            actor=requester,
            now=now,
            ip=ip,
            account_id=account_id if account else "",
            target=target,
        )
        raise refusal
    assert entitlement is not None and account is not None
    mapping = _eligible_mapping(account, entitlement, role)
    try:
        with transaction.atomic(durable=True):
            access_request = AccessRequest.objects.create(
                requester=requester,
                account=account,
                role_id=_role_pk(role),
                mapping=mapping,
                justification=justification,
                ticket=ticket.strip(),
                duration=duration,
                created_at=now,
                decide_by=now + settings.ACCESS_REQUEST_DECIDE_WITHIN,
            )
            approvers = list_approvers(access_request)
            access_request.unapprovable = len(approvers) < account.approvals_required
            if access_request.unapprovable:
                access_request.save(update_fields=["unapprovable"])
            record_event(
                "access_request.submitted",
                actor=requester,
                account_id=account_id,
                target=f"request #{access_request.pk}",
                ip=ip,
                now=now,
                data={
                    "request_id": access_request.pk,
                    "role": role,
                    "duration_minutes": access_request.duration_minutes,
                    "justification": justification,
                    "ticket": access_request.ticket,
                    "via": list(entitlement.via),
                    "mapping_id": mapping.pk if mapping else None,
                    "approver_groups": sorted(approver_groups_for(access_request)),
                    "possible_approvers": len(approvers),
                    "approvals_required": account.approvals_required,
                    "unapprovable": access_request.unapprovable,
                    "after": {"state": State.PENDING},
                },
            )
            _notify(access_request.pk, "submitted")
    except IntegrityError as exc:
        if "one_pending_request_per_target" not in str(exc):
            raise
        refusal = DuplicateRequest(f"You already have a pending request for {role} here.")
        record_refusal(
            "access_request.refused",
            refusal,
            actor=requester,
            now=now,
            ip=ip,
            account_id=account_id,
            target=target,
        )
        raise refusal from None
    return access_request


def _role_pk(name: str) -> int:
    return LogicalRole.objects.values_list("pk", flat=True).get(name=name)


# --- Decide ---------------------------------------------------------------------------------


def decide_request(
    access_request: AccessRequest | int,
    *,
    actor: User,
    decision: str,
    comment: str = "",
    now: datetime,
    ip: str | None = None,
) -> AccessRequest:
    """Record ``actor``'s approve or deny on a pending request.

    Under a row lock: refuses a request no longer pending or past its decision deadline
    (``RequestNotPending``), the requester (``SelfApprovalRefused``), anyone not in an applicable
    approver group *now* (``NotAnApprover``), a second vote (``AlreadyDecided``), and an approval
    for a requester no longer eligible (``RequesterNotEligible``). One deny ends the request; the
    account's threshold of distinct approvals creates exactly one grant. Refusals are audited.
    """
    request_id = access_request if isinstance(access_request, int) else access_request.pk
    return _decide(
        request_id, actor=actor, decision=decision, comment=comment, now=now, ip=ip, lock=True
    )


def _decide(
    request_id: int,
    *,
    actor: User,
    decision: str,
    comment: str,
    now: datetime,
    ip: str | None,
    lock: bool,
) -> AccessRequest:
    # ``lock=False`` exists for bench/approvals.py alone, to measure the race the lock prevents.
    if decision not in Decision.values:
        raise ValueError(f"decision must be one of {Decision.values}")
    refusal: RequestRefused | None = None
    with transaction.atomic(durable=True):
        rows = AccessRequest.objects.select_related(
            "requester", "account__business_unit", "role", "mapping"
        )
        if lock:
            rows = rows.select_for_update(of=("self",))
        access_request = rows.get(pk=request_id)
        entitlement = (
            _requester_entitlement(access_request, now=now)
            if decision == Decision.APPROVE
            else None
        )
        refusal = _decision_refusal(
            access_request, actor=actor, decision=decision, entitlement=entitlement, now=now
        )
        target = f"request #{access_request.pk}"
        account_id = access_request.account.account_id
        if refusal is not None:
            record_refusal(
                "access_request.decision_refused",
                refusal,
                actor=actor,
                account_id=account_id,
                target=target,
                ip=ip,
                now=now,
                data={
                    "request_id": access_request.pk,
                    "decision": decision,
                    "state": access_request.state,
                },
            )
        else:
            _apply_decision(
                access_request,
                actor=actor,
                decision=decision,
                entitlement=entitlement,
                comment=comment,
                now=now,
                ip=ip,
            )
    if refusal is not None:
        raise refusal
    return access_request


def _requester_entitlement(access_request: AccessRequest, *, now: datetime) -> Entitlement | None:
    # The requester row came with the locked request in one query: its groups are current.
    requester = access_request.requester
    return find_entitlement(
        requester.directory_groups,
        access_request.account.account_id,
        access_request.role.name,
        now=now,
        user_id=requester.pk,
    )


def _decision_refusal(
    access_request: AccessRequest,
    *,
    actor: User,
    decision: str,
    entitlement: Entitlement | None,
    now: datetime,
) -> RequestRefused | None:
    if access_request.state != State.PENDING:
        return RequestNotPending(
            f"Request #{access_request.pk} is already {access_request.state}; "
            "it can no longer be decided."
        )
    if now >= access_request.decide_by:
        return RequestNotPending(
            f"Request #{access_request.pk} was not decided in time and has expired."
        )
    if same_person(actor, access_request.requester):
        return SelfApprovalRefused("You cannot decide your own request.")
    if not is_approver(reloaded(actor), access_request):
        return NotAnApprover(
            f"You are not (or no longer) an approver for {access_request.account.alias}."
        )
    if access_request.approvals.filter(approver=actor).exists():
        return AlreadyDecided(f"You have already decided request #{access_request.pk}.")
    if decision == Decision.APPROVE:
        requester = access_request.requester
        if entitlement is None or entitlement.access != Access.ELIGIBLE:
            return RequesterNotEligible(
                f"{requester.label} is no longer eligible for {access_request.role.name} in "
                f"{access_request.account.alias}; the request can only be denied."
            )
        try:
            source_identity_for(requester)
        except IdentityNotExpressible:
            # No session could carry it, and a revocation could not name it: refuse up front.
            return RequesterNotEligible(
                f"{requester.label} has no identity usable as an AWS SourceIdentity; "
                "the request can only be denied."
            )
    return None


def _apply_decision(
    access_request: AccessRequest,
    *,
    actor: User,
    decision: str,
    entitlement: Entitlement | None,
    comment: str,
    now: datetime,
    ip: str | None,
) -> None:
    account = access_request.account
    target = f"request #{access_request.pk}"
    Approval.objects.create(
        request=access_request, approver=actor, decision=decision, comment=comment, at=now
    )
    if decision == Decision.DENY:
        _transition(access_request, State.DENIED, actor=actor, now=now, ip=ip, comment=comment)
        _notify(access_request.pk, "denied")
        return
    approvals = access_request.approvals.filter(decision=Decision.APPROVE).count()
    if approvals < account.approvals_required:
        record_event(
            "access_request.approval_recorded",
            actor=actor,
            account_id=account.account_id,
            target=target,
            ip=ip,
            now=now,
            data={
                "request_id": access_request.pk,
                "comment": comment,
                "approvals": approvals,
                "approvals_required": account.approvals_required,
                "before": {"state": State.PENDING},
                "after": {"state": State.PENDING},
            },
        )
        _notify(access_request.pk, "approval_recorded")
        return
    if entitlement is None:
        # _decision_refusal refuses an approval without one; reaching here is a bug.
        raise RuntimeError(f"request #{access_request.pk}: approval without an entitlement")
    _transition(access_request, State.APPROVED, actor=actor, now=now, ip=ip, comment=comment)
    requester = access_request.requester
    role_arn = entitlement.role_arn
    grant = Grant.objects.create(
        request=access_request,
        user=requester,
        account=account,
        role=access_request.role,
        starts_at=now,
        ends_at=now + access_request.duration,
        role_arn=role_arn,
        source_identity=source_identity_for(requester),
    )
    record_event(
        "grant.granted",
        actor=actor,
        account_id=account.account_id,
        target=f"grant #{grant.pk}",
        ip=ip,
        now=now,
        data={
            "grant_id": grant.pk,
            "request_id": access_request.pk,
            "user": requester.label,
            "subject": requester.subject,
            "role": access_request.role.name,
            "role_arn": role_arn,
            "starts_at": grant.starts_at,
            "ends_at": grant.ends_at,
            "approvers": list(
                access_request.approvals.filter(decision=Decision.APPROVE).values_list(
                    "approver__email", flat=True
                )
            ),
            "after": {"state": Grant.State.ACTIVE},
        },
    )
    _notify(access_request.pk, "approved")


def _transition(
    access_request: AccessRequest,
    new_state: str,
    *,
    actor: User | str,
    now: datetime,
    ip: str | None,
    comment: str = "",
) -> None:
    """Move a locked request to ``new_state`` and audit before/after."""
    before = access_request.state
    access_request.state = new_state
    access_request.decided_at = now
    access_request.save(update_fields=["state", "decided_at"])
    record_event(
        f"access_request.{new_state}",
        actor=actor,
        account_id=access_request.account.account_id,
        target=f"request #{access_request.pk}",
        ip=ip,
        now=now,
        data={
            "request_id": access_request.pk,
            "comment": comment,
            "before": {"state": before},
            "after": {"state": new_state},
        },
    )


# --- Cancel ---------------------------------------------------------------------------------


def cancel_request(
    access_request: AccessRequest | int, *, actor: User, now: datetime, ip: str | None = None
) -> AccessRequest:
    """The requester withdraws a pending request. Raises ``NotTheRequester`` or
    ``RequestNotPending``."""
    request_id = access_request if isinstance(access_request, int) else access_request.pk
    refusal: RequestRefused | None = None
    with transaction.atomic(durable=True):
        locked = (
            AccessRequest.objects.select_for_update(of=("self",))
            .select_related("requester", "account")
            .get(pk=request_id)
        )
        if not same_person(actor, locked.requester):
            refusal = NotTheRequester("Only the requester can cancel a request.")
        elif locked.state != State.PENDING:
            refusal = RequestNotPending(
                f"Request #{locked.pk} is already {locked.state}; it cannot be cancelled."
            )
        if refusal is None:
            _transition(locked, State.CANCELLED, actor=actor, now=now, ip=ip)
        else:
            record_refusal(
                "access_request.cancel_refused",
                refusal,
                actor=actor,
                account_id=locked.account.account_id,
                target=f"request #{locked.pk}",
                ip=ip,
                now=now,
                data={"state": locked.state},
            )
    if refusal is not None:
        raise refusal
    return locked


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
    delays the deny but never loses it. Raises ``GrantNotActive`` or ``NotAllowedToRevoke``.
    """
    grant_id = grant if isinstance(grant, int) else grant.pk
    refusal: RequestRefused | None = None
    with transaction.atomic(durable=True):
        locked = (
            Grant.objects.select_for_update(of=("self",))
            .select_related(
                "user", "account", "role", "request__account__business_unit", "request__mapping"
            )
            .get(pk=grant_id)
        )
        if not may_revoke(reloaded(actor), locked):
            refusal = NotAllowedToRevoke(
                "Only an approver of this grant or an admin may revoke it."
            )
        elif not locked.is_active_at(now):
            refusal = GrantNotActive(f"Grant #{locked.pk} is already {_grant_state(locked, now)}.")
        if refusal is not None:
            record_refusal(
                "grant.revoke_refused",
                refusal,
                actor=actor,
                account_id=locked.account.account_id,
                target=f"grant #{locked.pk}",
                ip=ip,
                now=now,
                data={"state": locked.state},
            )
        else:
            _revoke_locked(locked, actor=actor, now=now, reason=reason, ip=ip)
    if refusal is not None:
        raise refusal
    return locked


def _revoke_locked(
    grant: Grant, *, actor: User | str, now: datetime, reason: str, ip: str | None
) -> None:
    grant.state = Grant.State.REVOKED
    grant.revoked_at = now
    grant.revoked_by = actor if isinstance(actor, User) else None
    grant.save(update_fields=["state", "revoked_at", "revoked_by"])
    record_event(
        "grant.revoked",
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
    _enqueue("apply_revocation_policy", grant.pk)


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


def _grant_state(grant: Grant, now: datetime) -> str:
    if grant.state == Grant.State.ACTIVE and grant.ends_at <= now:
        return "expired"
    return str(grant.state)


@contextmanager
def _serialised_per_role(role_arn: str) -> Iterator[None]:
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
        with _serialised_per_role(role_arn):
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
    removed = 0
    for role_arn in sorted(arns):
        with _serialised_per_role(role_arn):
            removed += iam.collect_expired_revocations(role_arn, now=now)
    return removed


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
                .filter(state=State.PENDING, decide_by__lte=now)
                .order_by("decide_by")[:_EXPIRY_BATCH]
            )
            for access_request in due_requests:
                _transition(access_request, State.EXPIRED, actor="system", now=now, ip=None)
                _notify(access_request.pk, "expired")
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
        requests_expired += len(due_requests)
        grants_expired += len(due_grants)
        if len(due_requests) < _EXPIRY_BATCH and len(due_grants) < _EXPIRY_BATCH:
            return ExpiryReport(requests_expired, grants_expired)


# --- Side effects after commit ------------------------------------------------------------


def _notify(request_id: int, event: str) -> None:
    _enqueue("send_request_email", request_id, event)
    if settings.SLACK_WEBHOOK_URL:
        _enqueue("post_request_webhook", request_id, event)


def _enqueue(task_name: str, *args: Any) -> None:
    """Queue a task once the transaction commits. A broker outage (or, with eager tasks, a
    failing mail server) is logged and never undoes or blocks the committed change; owed
    revocations are re-queued by the sweep."""

    def send() -> None:
        from access_requests import tasks

        try:
            getattr(tasks, task_name).delay(*args)
        except Retry as retry:
            # Eager mode (demo): the task failed and asked to be retried; the sweep will.
            logger.warning("%s%r failed and stays owed: %s", task_name, args, retry)
        except Exception:
            logger.exception("could not run or queue %s%r", task_name, args)

    transaction.on_commit(send)
