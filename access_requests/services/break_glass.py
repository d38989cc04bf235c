"""Break-glass (SPEC §4, SECURITY.md §7): access at once, never unnoticed.

A member of a ``break_glass`` mapping row activates it with a justification and gets a grant at
once, approved by nobody: an ``AccessRequest`` born approved (``break_glass=True``) and its
``Grant`` (``break_glass=True``, so sessions carry ``BreakGlass=true``). In the same transaction
the notifications are owed through the outbox (the business unit's approvers and
``BREAK_GLASS_NOTIFY``, by mail and webhook): if they cannot be recorded, nothing is granted.
Activations are limited per person (all their identities) in a sliding window, counted in the
database under a lock on the person. The activation then waits on ``/approvals/`` for a review
by someone else, and is flagged on ``/audit/`` until reviewed.

Break-glass skips approval, not authentication: a ``require_mfa`` role still needs a fresh MFA
sign-in to be issued (federation/stepup/rules.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from access_requests import tasks
from access_requests.approvers import (
    list_approvers,
    may_review_break_glass,
    may_see_request,
    reloaded,
    same_person,
    source_identity_for,
)
from access_requests.models import AccessRequest, Grant
from access_requests.notifications import RequestEvent
from access_requests.refusals import (
    AlreadyGranted,
    AlreadyReviewed,
    BreakGlassLimitReached,
    DurationOutOfBounds,
    JustificationRequired,
    NotAReviewer,
    NotBreakGlass,
    RequestRefused,
    SelfReviewRefused,
)
from access_requests.services.effects import enqueue
from access_requests.services.locked import change_locked, not_found
from federation.audit.chain import record_event, record_refusal
from federation.aws.names import IdentityNotExpressible
from federation.entitlements.resolve import Entitlement, find_entitlement
from federation.entitlements.scope import accounts_reached
from federation.models import (
    MIN_SESSION,
    Access,
    Account,
    EntitlementAccess,
    GroupMapping,
    LogicalRole,
    Person,
    User,
)
from federation.observability import metrics

State = AccessRequest.State
# As for approved grants (services/workflow.py MIN_GRANT): at least 15 minutes to start a
# session in, since none outlives its grant and STS issues none under 15 minutes.
MIN_ACTIVATION = 2 * MIN_SESSION
MAX_JUSTIFICATION = 2000


def activate_break_glass(
    user: User,
    *,
    account_id: str,
    role: str,
    justification: str,
    duration: timedelta | None = None,
    now: datetime,
    ip: str | None = None,
) -> Grant:
    """Grant ``user`` (account, role) at once through a break-glass row they hold now.

    ``duration`` defaults to the row's ``max_grant_minutes`` and may not exceed it. Refused
    (audited as ``break_glass.refused``, raised as a ``RequestRefused``) without a
    justification, without a break-glass row, when the person already holds the role, or past
    ``BREAK_GLASS_MAX_ACTIVATIONS`` in ``BREAK_GLASS_WINDOW``. On success the grant, its
    request, the audit event and the owed notifications commit together.
    """
    justification = justification.strip()
    target = f"{account_id}/{role}"
    entitlement = find_entitlement(
        user.directory_groups, account_id, role, now=now, user_id=user.pk
    )
    account = Account.objects.select_related("business_unit").filter(account_id=account_id).first()
    refuse = _refuser(user, account_id if entitlement and account else "", target, now, ip)
    if not justification:
        refuse(JustificationRequired("Break-glass needs a justification: say what is broken."))
    if len(justification) > MAX_JUSTIFICATION:
        refuse(
            JustificationRequired(
                f"The justification is longer than {MAX_JUSTIFICATION} characters."
            )
        )
    if entitlement is None or account is None or entitlement.break_glass_max is None:
        refuse(NotBreakGlass(f"You have no break-glass access to {role} in account {account_id}."))
    assert entitlement is not None and account is not None
    cap = entitlement.break_glass_max
    assert cap is not None
    if entitlement.access in (EntitlementAccess.STANDING, EntitlementAccess.GRANT):
        refuse(
            AlreadyGranted(
                f"You already hold {role} in {entitlement.account_alias} "
                f"({entitlement.access}); there is nothing to break glass for."
            )
        )
    length = cap if duration is None else duration
    if not MIN_ACTIVATION <= length <= cap:
        refuse(
            DurationOutOfBounds(
                f"A break-glass activation of this role lasts {_minutes(MIN_ACTIVATION)} to "
                f"{_minutes(cap)} minutes."
            )
        )
    try:
        source_identity = source_identity_for(user)
    except IdentityNotExpressible as problem:
        refuse(NotBreakGlass(problem.message))
    with transaction.atomic(durable=True):
        person = _lock_person(user)
        recent = _recent_activations(user, person, now=now)
        if recent >= settings.BREAK_GLASS_MAX_ACTIVATIONS:
            refusal = BreakGlassLimitReached(
                f"You have used break-glass {recent} times in the last "
                f"{_hours(settings.BREAK_GLASS_WINDOW)} hours, the most allowed; ask an "
                "approver for access instead.",
                detail={"recent_activations": recent},
            )
            record_refusal(
                "break_glass.refused",
                refusal,
                actor=user,
                account_id=account_id,
                target=target,
                ip=ip,
                now=now,
            )
        else:
            grant = _grant(
                user,
                account=account,
                entitlement=entitlement,
                justification=justification,
                duration=length,
                source_identity=source_identity,
                now=now,
                ip=ip,
            )
            metrics.record_break_glass(
                business_unit=account.business_unit.slug, environment=account.environment
            )
            return grant
    raise refusal


def _grant(
    user: User,
    *,
    account: Account,
    entitlement: Entitlement,
    justification: str,
    duration: timedelta,
    source_identity: str,
    now: datetime,
    ip: str | None,
) -> Grant:
    role = LogicalRole.objects.get(name=entitlement.role)
    activation = AccessRequest.objects.create(
        requester=user,
        account=account,
        role=role,
        mapping=_break_glass_row(account, entitlement, user.directory_groups),
        justification=justification,
        duration=duration,
        state=State.APPROVED,
        created_at=now,
        decided_at=now,
        decide_by=now + duration,
        break_glass=True,
    )
    grant = Grant.objects.create(
        request=activation,
        user=user,
        account=account,
        role=role,
        starts_at=now,
        ends_at=now + duration,
        role_arn=entitlement.role_arn,
        source_identity=source_identity,
        break_glass=True,
    )
    approvers = list_approvers(activation)
    record_event(
        "break_glass.activated",
        actor=user,
        account_id=account.account_id,
        target=f"grant #{grant.pk}",
        ip=ip,
        now=now,
        data={
            "request_id": activation.pk,
            "grant_id": grant.pk,
            "role": role.name,
            "role_arn": entitlement.role_arn,
            "environment": account.environment,
            "justification": justification,
            "via": list(entitlement.via),
            "mapping_id": activation.mapping_id,
            "starts_at": grant.starts_at,
            "ends_at": grant.ends_at,
            "notified_approvers": len(approvers),
            "notified_security_contacts": len(settings.BREAK_GLASS_NOTIFY),
            "after": {"state": Grant.State.ACTIVE, "reviewed": False},
        },
    )
    # Owed in this transaction: no grant without the record that people must be told.
    enqueue(tasks.send_request_email, activation.pk, str(RequestEvent.BREAK_GLASS_ACTIVATED))
    enqueue(tasks.post_break_glass_webhooks, activation.pk, str(RequestEvent.BREAK_GLASS_ACTIVATED))
    return grant


def _break_glass_row(
    account: Account, entitlement: Entitlement, groups: list[str]
) -> GroupMapping | None:
    """The break-glass row behind the activation (the longest, then the first); ``via`` names
    only the rows of the entitlement's access kind, so the holder's groups are searched."""
    rows = GroupMapping.objects.filter(
        group__in=[str(g) for g in groups],
        role__name=entitlement.role,
        business_unit_id=account.business_unit_id,
        access=Access.BREAK_GLASS,
    ).order_by("pk")
    reaching = [
        row
        for row in rows
        if accounts_reached(
            account.business_unit.slug,
            row.environments,
            row.accounts,
            accounts_by_id={account.account_id: _Placed(account)},
            accounts_of_unit={account.business_unit.slug: (_Placed(account),)},
        )
    ]
    if not reaching:
        return None
    return max(reaching, key=lambda row: (row.max_grant or timedelta(0), -row.pk))


class _Placed:
    """An account as the scope rule reads it."""

    def __init__(self, account: Account) -> None:
        self.account_id = account.account_id
        self.business_unit = account.business_unit.slug
        self.environment = account.environment


def _lock_person(user: User) -> Person | None:
    """Serialise a person's activations, so two at once cannot both pass the limit."""
    if user.person_id is None:
        User.objects.select_for_update().filter(pk=user.pk).first()
        return None
    return Person.objects.select_for_update().filter(pk=user.person_id).first()


def _recent_activations(user: User, person: Person | None, *, now: datetime) -> int:
    who = Q(requester=user) if person is None else Q(requester__person=person) | Q(requester=user)
    return AccessRequest.objects.filter(
        who, break_glass=True, created_at__gt=now - settings.BREAK_GLASS_WINDOW
    ).count()


def _refuser(
    user: User, account_id: str, target: str, now: datetime, ip: str | None
) -> Callable[[RequestRefused], NoReturn]:
    def refuse(refusal: RequestRefused) -> NoReturn:
        record_refusal(
            "break_glass.refused",
            refusal,
            actor=user,
            account_id=account_id,
            target=target,
            ip=ip,
            now=now,
        )
        raise refusal

    return refuse


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


def _hours(value: timedelta) -> int:
    return int(value.total_seconds() // 3600)


# --- Review ---------------------------------------------------------------------------------


def review_break_glass(
    activation: AccessRequest | int,
    *,
    actor: User,
    comment: str = "",
    now: datetime,
    ip: str | None = None,
) -> AccessRequest:
    """Record ``actor``'s review of a break-glass activation (its grant may still be revoked
    separately). Under a row lock: an unknown id, one outside the actor's reach and one that is
    no break-glass activation are the same ``RequestNotFound``; refuses the user themselves
    through any identity (``SelfReviewRefused``), anyone neither an approver of the request's
    account nor an admin (``NotAReviewer``) and a second review (``AlreadyReviewed``)."""
    request_id = activation if isinstance(activation, int) else activation.pk
    comment = comment.strip()[:MAX_JUSTIFICATION]

    def check(locked: AccessRequest) -> RequestRefused | None:
        current = reloaded(actor)
        if not locked.break_glass or not may_see_request(current, locked):
            return not_found("request")
        if locked.reviewed_at is not None:
            return AlreadyReviewed(
                f"Break-glass activation #{locked.pk} was already reviewed by "
                f"{locked.reviewed_by.label if locked.reviewed_by else 'someone'}."
            )
        if same_person(current, locked.requester):
            return SelfReviewRefused("Someone else must review your own break-glass activation.")
        if not may_review_break_glass(current, locked):
            return NotAReviewer(
                f"You are not (or no longer) an approver for {locked.account.alias}."
            )
        return None

    def apply(locked: AccessRequest, _: None) -> None:
        locked.reviewed_by = actor
        locked.reviewed_at = now
        locked.review_comment = comment
        locked.save(update_fields=["reviewed_by", "reviewed_at", "review_comment"])
        record_event(
            "break_glass.reviewed",
            actor=actor,
            account_id=locked.account.account_id,
            target=f"request #{locked.pk}",
            ip=ip,
            now=now,
            data={
                "request_id": locked.pk,
                "user": locked.requester.label,
                "comment": comment,
                "before": {"reviewed": False},
                "after": {"reviewed": True},
            },
        )
        enqueue(tasks.send_request_email, locked.pk, str(RequestEvent.BREAK_GLASS_REVIEWED))

    return change_locked(
        AccessRequest.objects.select_related("requester", "account__business_unit", "role"),
        request_id,
        check=check,
        apply=apply,
        refused_event="break_glass.review_refused",
        actor=actor,
        now=now,
        ip=ip,
        refused_data={"request_id": request_id},
    )


def list_unreviewed(viewer: User | None = None) -> list[AccessRequest]:
    """Break-glass activations nobody has reviewed yet, oldest first: all of them (``viewer``
    None: the audit page), or those ``viewer`` may see (an approver's page; the user sees their
    own, without a way to review it)."""
    pending = (
        AccessRequest.objects.filter(break_glass=True, reviewed_at__isnull=True)
        .select_related("requester", "account__business_unit", "role", "grant", "mapping")
        .order_by("created_at")
    )
    if viewer is None:
        return list(pending)
    return [r for r in pending if may_see_request(viewer, r)]
