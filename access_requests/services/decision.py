"""The checks a decision on an access request passes before it counts: state and deadline,
not the requester (through any identity), an approver now, one vote per person, and a requester
still eligible with a usable SourceIdentity. workflow.decide_request runs them under the lock."""

from __future__ import annotations

from datetime import datetime

from access_requests.approvers import (
    is_approver,
    same_person,
    source_identity_for,
)
from access_requests.models import AccessRequest, Approval
from access_requests.refusals import (
    AlreadyDecided,
    NotAnApprover,
    RequesterNotEligible,
    RequestNotPending,
    RequestRefused,
    SelfApprovalRefused,
)
from federation.aws.names import IdentityNotExpressible
from federation.entitlements.resolve import Entitlement, find_entitlement
from federation.models import (
    EntitlementAccess,
    User,
)

State = AccessRequest.State
Decision = Approval.Decision


def requester_entitlement(access_request: AccessRequest, *, now: datetime) -> Entitlement | None:
    """What the requester may still request of the target now (their groups as of the lock)."""
    # The requester row came with the locked request in one query: its groups are current.
    requester = access_request.requester
    return find_entitlement(
        requester.directory_groups,
        access_request.account.account_id,
        access_request.role.name,
        now=now,
        user_id=requester.pk,
    )


def decision_refusal(
    access_request: AccessRequest,
    *,
    actor: User,
    decision: str,
    entitlement: Entitlement | None,
    now: datetime,
) -> RequestRefused | None:
    """Why ``actor`` may not record ``decision`` on ``access_request`` now, or None. Called
    under the request's row lock; ``entitlement`` is the requester's, re-resolved for approvals."""
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
    if not is_approver(actor, access_request):
        return NotAnApprover(
            f"You are not (or no longer) an approver for {access_request.account.alias}."
        )
    # One vote per person: a second identity of an approver does not count as another approver.
    voters = access_request.approvals.select_related("approver")
    if any(vote.approver.is_same_person(actor) for vote in voters):
        return AlreadyDecided(f"You have already decided request #{access_request.pk}.")
    if decision == Decision.APPROVE:
        requester = access_request.requester
        if entitlement is None or entitlement.access != EntitlementAccess.ELIGIBLE:
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
