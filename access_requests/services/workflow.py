"""The request state machine (SPEC §4 Requests, SECURITY.md §5): submit, decide, cancel.

Transitions::

    request: pending -> approved | denied | cancelled | expired
    (approval at the account's threshold creates the grant, born active)

Each transition runs in one durable transaction that writes an audit event with the state before
and after. Decisions and cancellations lock the request and re-check it first
(``services/locked.py``); the unique grant per request is the database's last line against a
double grant. Notices are queued after commit (``services/effects.py``). Refusals are audited,
then raised as ``RequestRefused`` subclasses (``access_requests/refusals.py``) whose message is
fit to show to the person. Who may act lives in ``approvers.py``; the grant's own lifecycle
(revoke, expire, lost eligibility) in ``services/grants.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from django.conf import settings
from django.db import IntegrityError, transaction

from access_requests.approvers import (
    approver_groups_for,
    list_approvers,
    may_see_request,
    reloaded,
    same_person,
    source_identity_for,
)
from access_requests.models import AccessRequest, Approval, Grant
from access_requests.notifications import RequestEvent
from access_requests.refusals import (
    AlreadyGranted,
    DuplicateRequest,
    DurationOutOfBounds,
    JustificationRequired,
    NotEligible,
    NotTheRequester,
    RequestNotPending,
    RequestRefused,
)
from access_requests.services.decision import decision_refusal, requester_entitlement
from access_requests.services.effects import notify
from access_requests.services.locked import change_locked, not_found
from federation.audit.chain import record_event, record_refusal
from federation.entitlements.resolve import Entitlement, find_entitlement
from federation.entitlements.scope import accounts_reached
from federation.models import (
    MIN_GRANT,
    MIN_GRANT_MINUTES,
    Access,
    Account,
    EntitlementAccess,
    GroupMapping,
    LogicalRole,
    User,
)
from federation.observability import metrics

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
    holds now, with a justification and ``MIN_GRANT <= duration <= the mapping's max grant``.

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
    elif entitlement.access == EntitlementAccess.STANDING:
        refusal = NotEligible(
            f"You already hold {role} in {entitlement.account_alias} as standing access; "
            "there is nothing to request."
        )
    elif entitlement.access == EntitlementAccess.GRANT:
        refusal = AlreadyGranted(
            f"You already have an active grant of {role} in {entitlement.account_alias}."
        )
    elif entitlement.max_grant is None or duration > entitlement.max_grant:
        cap = int((entitlement.max_grant or timedelta(0)).total_seconds() // 60)
        refusal = DurationOutOfBounds(f"The longest grant for this role is {cap} minutes.")
    elif duration < MIN_GRANT:
        refusal = DurationOutOfBounds(
            f"A grant lasts at least {MIN_GRANT_MINUTES} minutes: an AWS session lasts at least "
            "15 minutes and never outlives its grant, so the last 15 minutes of a grant "
            "cannot start a new session."
        )
    elif account is not None and _has_pending(requester, account, role):
        refusal = DuplicateRequest(f"You already have a pending request for {role} here.")
    if refusal is not None:
        _refuse_submission(
            refusal,
            requester,
            # Only an account the requester may request is named: an account outside their reach
            # is audited exactly like one that does not exist (its id stays in ``target``).
            account_id=account_id if account and entitlement else "",
            target=target,
            now=now,
            ip=ip,
        )
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
            metrics.record_request_state(State.PENDING)
            notify(access_request.pk, RequestEvent.SUBMITTED)
    except IntegrityError:
        # A concurrent submission won the race to the one_pending_request_per_target constraint.
        # Each database words that error its own way (SQLite does not name the constraint), so
        # ask the rule again rather than read the message.
        if not _has_pending(requester, account, role):
            raise
        _refuse_submission(
            DuplicateRequest(f"You already have a pending request for {role} here."),
            requester,
            account_id=account_id,
            target=target,
            now=now,
            ip=ip,
        )
    return access_request


def _refuse_submission(
    refusal: RequestRefused,
    requester: User,
    *,
    account_id: str,
    target: str,
    now: datetime,
    ip: str | None,
) -> NoReturn:
    """Audit a refused submission and raise it; there is no row to lock yet."""
    record_refusal(
        "access_request.refused",
        refusal,
        actor=requester,
        now=now,
        ip=ip,
        account_id=account_id,
        target=target,
    )
    raise refusal


def _has_pending(requester: User, account: Account, role: str) -> bool:
    return AccessRequest.objects.filter(
        requester=requester, account=account, role__name=role, state=State.PENDING
    ).exists()


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

    Under a row lock: answers an unknown id, and a request outside the actor's reach (another
    business unit: ``may_see_request``), with the same ``RequestNotFound``; refuses a request no
    longer pending or past its decision deadline (``RequestNotPending``), the requester through
    any of their identities (``SelfApprovalRefused``), anyone not in an applicable approver
    group *now* (``NotAnApprover``), a second vote by the same person through any identity
    (``AlreadyDecided``), and an approval for a requester no longer eligible
    (``RequesterNotEligible``). One deny ends the request; the account's threshold of distinct
    approvers (people, not identities) creates exactly one grant. Refusals are audited.
    """
    if decision not in Decision.values:
        raise ValueError(f"decision must be one of {Decision.values}")
    request_id = access_request if isinstance(access_request, int) else access_request.pk

    def check(locked: AccessRequest) -> RequestRefused | Entitlement | None:
        current = reloaded(actor)
        if not may_see_request(current, locked):
            return not_found("request")
        entitlement = (
            requester_entitlement(locked, now=now) if decision == Decision.APPROVE else None
        )
        refusal = decision_refusal(
            locked, actor=current, decision=decision, entitlement=entitlement, now=now
        )
        return entitlement if refusal is None else refusal

    def apply(locked: AccessRequest, entitlement: Entitlement | None) -> None:
        _apply_decision(
            locked,
            actor=actor,
            decision=decision,
            entitlement=entitlement,
            comment=comment,
            now=now,
            ip=ip,
        )

    return change_locked(
        AccessRequest.objects.select_related(
            "requester", "account__business_unit", "role", "mapping"
        ),
        request_id,
        check=check,
        apply=apply,
        refused_event="access_request.decision_refused",
        actor=actor,
        now=now,
        ip=ip,
        refused_data={"request_id": request_id, "decision": decision},
    )


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
    metrics.record_decision(decision)
    if decision == Decision.DENY:
        transition_request(
            access_request, State.DENIED, actor=actor, now=now, ip=ip, comment=comment
        )
        notify(access_request.pk, RequestEvent.DENIED)
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
        notify(access_request.pk, RequestEvent.APPROVAL_RECORDED)
        return
    if entitlement is None:
        # decision_refusal refuses an approval without one; reaching here is a bug.
        raise RuntimeError(f"request #{access_request.pk}: approval without an entitlement")
    transition_request(access_request, State.APPROVED, actor=actor, now=now, ip=ip, comment=comment)
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
    metrics.record_grant_state(Grant.State.ACTIVE)
    notify(access_request.pk, RequestEvent.APPROVED)


def transition_request(
    access_request: AccessRequest,
    new_state: str,
    *,
    actor: User | str,
    now: datetime,
    ip: str | None,
    comment: str = "",
) -> None:
    """Move a locked request to ``new_state`` and audit before/after (inside the caller's
    transaction, which holds the row lock)."""
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
    metrics.record_request_state(new_state)


# --- Cancel ---------------------------------------------------------------------------------


def cancel_pending_of(
    requester: User, *, actor: str, now: datetime, comment: str
) -> list[AccessRequest]:
    """Cancel every pending request of ``requester`` inside the caller's transaction (a
    directory leaver: ``federation.directory``). Each is locked and audited with ``comment``."""
    pending = (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("account")
        .filter(requester=requester, state=State.PENDING)
        .order_by("pk")
    )
    cancelled = list(pending)
    for access_request in cancelled:
        transition_request(
            access_request, State.CANCELLED, actor=actor, now=now, ip=None, comment=comment
        )
    return cancelled


def cancel_request(
    access_request: AccessRequest | int, *, actor: User, now: datetime, ip: str | None = None
) -> AccessRequest:
    """The requester (through any of their identities) withdraws a pending request. Raises
    ``RequestNotFound`` (unknown, or outside the actor's reach), ``NotTheRequester`` or
    ``RequestNotPending`` (audited)."""
    request_id = access_request if isinstance(access_request, int) else access_request.pk

    def check(locked: AccessRequest) -> RequestRefused | None:
        if not may_see_request(reloaded(actor), locked):
            return not_found("request")
        if not same_person(actor, locked.requester):
            return NotTheRequester("Only the requester can cancel a request.")
        if locked.state != State.PENDING:
            return RequestNotPending(
                f"Request #{locked.pk} is already {locked.state}; it cannot be cancelled."
            )
        return None

    def apply(locked: AccessRequest, _: None) -> None:
        transition_request(locked, State.CANCELLED, actor=actor, now=now, ip=ip)

    return change_locked(
        AccessRequest.objects.select_related("requester", "account"),
        request_id,
        check=check,
        apply=apply,
        refused_event="access_request.cancel_refused",
        actor=actor,
        now=now,
        ip=ip,
    )
