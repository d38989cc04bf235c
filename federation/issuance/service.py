"""Issuing AWS role sessions (SPEC §4 Issuance, SECURITY.md §4-§5): the business rules.

``issue_session`` re-checks the entitlement at the moment of issuance, works out the duration,
asks ``federation.aws.sts`` for the session (and a console link), records a ``SessionIssuance`` row
and audits it. Refusals and failures are audited too, and raised as the exceptions below, which
views turn into pages and API errors. The role ARN only ever comes from the server-side tables.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from access_requests.models import Grant
from federation.audit.chain import record_event_with_row, record_refusal
from federation.aws import sts
from federation.aws.names import IdentityNotExpressible, session_name_for
from federation.entitlements.resolve import Entitlement, find_entitlement
from federation.models import (
    ACCOUNT_ID_RE,
    MAX_SESSION,
    MIN_SESSION,
    SLUG_RE,
    ApiToken,
    EntitlementAccess,
    SessionIssuance,
    SignIn,
    User,
)
from federation.observability import metrics
from federation.refusals import Refused
from federation.stepup.rules import StepUpRequired, shows_mfa, step_up_refusal

# Role chaining (the broker on role credentials) caps a session at one hour.
CHAINED_MAX = timedelta(hours=1)
_TAG_VALUE_RE = re.compile(r"^[\w\s.:/=+\-@]{0,256}$")

TAG_BUSINESS_UNIT = "BusinessUnit"
TAG_IDP = "IdP"
TAG_ACCESS_REQUEST = "AccessRequest"
# Set by the broker only, never copied from input: the sign-in behind the session showed MFA
# (the trust policy of a require_mfa role demands it), and the grant was a break-glass one.
TAG_MFA = "MFA"
TAG_BREAK_GLASS = "BreakGlass"


class IssuanceRefused(Refused):
    """Issuance was refused by our rules (a subclass says why)."""

    code = "refused"
    status = 403
    title = "Session refused"


class InvalidIssuanceRequest(IssuanceRefused):
    code = "invalid_request"
    status = 400


class NotEntitled(IssuanceRefused):
    code = "not_entitled"


class IdentityDeactivated(IssuanceRefused):
    """The identity was deactivated (a SCIM leaver) after the request was authenticated."""

    code = "identity_deactivated"


class GrantRequired(IssuanceRefused):
    code = "grant_required"


class GrantEnded(IssuanceRefused):
    """The grant behind an entitlement ended or was revoked between resolving and issuing."""

    code = "grant_not_active"


class DurationTooShort(IssuanceRefused):
    code = "duration_too_short"
    status = 409


class IssuanceFailed(Refused):
    """STS (or the federation endpoint) could not give a session: a peer failure (a subclass
    says which)."""

    code = "sts_unavailable"
    status = 503
    title = "AWS did not issue the session"


class StsUnreachable(IssuanceFailed):
    """No STS endpoint answered (connection, throttling, 5xx everywhere): try again later."""

    code = "sts_unavailable"
    status = 503


class SessionRefusedByAws(IssuanceFailed):
    """An STS endpoint answered and refused the AssumeRole (AccessDenied, ValidationError...)."""

    code = "sts_refused"
    status = 502


class ConsoleSignInFailed(IssuanceFailed):
    """AWS issued the session, but the federation endpoint gave no console sign-in token."""

    code = "console_link_failed"
    status = 502


@dataclass(frozen=True)
class IssuedSession:
    issuance_id: int
    account_id: str
    role: str
    role_arn: str
    session_name: str
    region: str
    duration: timedelta
    expires_at: datetime
    credentials: sts.Credentials
    console_url: str | None = field(default=None, repr=False)  # a bearer login: never logged


def session_duration(
    *,
    role_max: timedelta,
    requested: timedelta | None,
    grant_ends_at: datetime | None,
    chained: bool,
    now: datetime,
) -> timedelta:
    """min(requested, role max, grant remaining, 1 h when chained), in whole seconds.

    Raises DurationTooShort below STS's 15-minute floor rather than outlive a grant.
    """
    limits = [role_max, MAX_SESSION]
    if requested is not None:
        limits.append(requested)
    if grant_ends_at is not None:
        limits.append(grant_ends_at - now)
    if chained:
        limits.append(CHAINED_MAX)
    duration = timedelta(seconds=int(min(limits).total_seconds()))
    if duration < MIN_SESSION:
        if grant_ends_at is not None and grant_ends_at - now < MIN_SESSION:
            raise DurationTooShort(
                "Your grant ends in less than 15 minutes, the shortest session AWS issues. "
                "Request access again to continue."
            )
        raise DurationTooShort("A session must last at least 15 minutes.")
    return duration


def session_tags(
    user: User, entitlement: Entitlement, *, mfa: bool = False
) -> tuple[tuple[str, str], ...]:
    """Session tags: business unit, IdP and, under a grant, its access request; MFA=true when
    the sign-in showed MFA, BreakGlass=true under a break-glass grant. Values come from our
    tables only (never free text), and are checked against STS's tag rules."""
    tags = [
        (TAG_BUSINESS_UNIT, entitlement.business_unit),
        (TAG_IDP, user.idp.slug if user.idp is not None else "local"),
    ]
    if entitlement.request_id is not None:
        tags.append((TAG_ACCESS_REQUEST, str(entitlement.request_id)))
    if mfa:
        tags.append((TAG_MFA, "true"))
    if entitlement.break_glass:
        tags.append((TAG_BREAK_GLASS, "true"))
    for key, value in tags:
        if not _TAG_VALUE_RE.fullmatch(value):
            raise InvalidIssuanceRequest(f"session tag {key} has a value AWS would refuse")
    return tuple(tags)


def _audit_target(account_id: str, role: str) -> str:
    return f"{account_id}/{role}"


def issue_session(
    user: User,
    *,
    account_id: str,
    role: str,
    kind: str,
    requested: timedelta | None,
    now: datetime,
    ip: str | None,
    api_token: ApiToken | None = None,
    authentication: SignIn | None = None,
) -> IssuedSession:
    """Issue an AWS role session for ``user`` in (account, role), console or CLI ``kind``.

    ``authentication`` is the sign-in the step-up rule judges (federation/stepup/rules.py):
    a role with ``require_mfa`` is refused with ``StepUpRequired`` unless it showed MFA
    recently enough.

    Guarantees: the entitlement is resolved again now from the user's groups and active grants
    (a grant row is locked, so a concurrent revocation waits or wins); the role ARN comes from
    our tables; the session is named after the user's email and carries it as SourceIdentity;
    its duration never outlives the grant. Every outcome is audited with who, what and why.

    Raises IssuanceRefused (a subclass says why), StepUpRequired, IdentityNotExpressible, or
    IssuanceFailed (a subclass: STS unreachable, STS refused, console link failed).
    """
    # The request's own fields are echoed into the audit only as far as a valid value could
    # reach: a hostile form cannot bloat the log.
    context: dict[str, Any] = {
        "kind": kind[:16],
        "role": role[:64],
        "requested_seconds": int(requested.total_seconds()) if requested is not None else None,
        "via": "api" if api_token is not None else "portal",
    }
    if api_token is not None:
        context["api_token"] = api_token.prefix
    problem: Refused
    with transaction.atomic(durable=True):
        try:
            return _issue(
                user,
                account_id=account_id,
                role=role,
                kind=kind,
                requested=requested,
                now=now,
                ip=ip,
                api_token=api_token,
                authentication=authentication,
                context=context,
            )
        except (IssuanceRefused, StepUpRequired, IdentityNotExpressible) as refusal:
            problem, event = refusal, "issuance.refused"
        except IssuanceFailed as failure:
            problem, event = failure, "issuance.failed"
        record_refusal(
            event,
            problem,
            actor=user,
            account_id=account_id if re.fullmatch(ACCOUNT_ID_RE, account_id or "") else "",
            target=_audit_target(account_id[:32], role[:64]),
            ip=ip,
            now=now,
            data=context,
        )
    raise problem


def _issue(
    user: User,
    *,
    account_id: str,
    role: str,
    kind: str,
    requested: timedelta | None,
    now: datetime,
    ip: str | None,
    api_token: ApiToken | None,
    authentication: SignIn | None,
    context: dict[str, Any],
) -> IssuedSession:
    if kind not in SessionIssuance.Kind.values:
        raise InvalidIssuanceRequest("Ask for a console sign-in or CLI credentials.")
    if not re.fullmatch(ACCOUNT_ID_RE, account_id or "") or not re.fullmatch(SLUG_RE, role or ""):
        raise InvalidIssuanceRequest("The account must be a 12-digit id and the role a name.")
    if requested is not None and not MIN_SESSION <= requested <= MAX_SESSION:
        raise InvalidIssuanceRequest("A session lasts between 15 minutes and 12 hours.")
    # Re-read the identity under a row lock: a directory leaver or mover (SCIM) may have
    # changed it since this request loaded it, and locks the same row, so the two serialise.
    active, groups = _lock_identity(user)
    if not active:
        raise IdentityDeactivated("Your account has been deactivated by your directory.")
    entitlement = find_entitlement(groups, account_id, role, now=now, user_id=user.pk)
    if entitlement is None:
        raise NotEntitled(f"You are not entitled to the role {role} in account {account_id}.")
    context.update(
        business_unit=entitlement.business_unit,
        environment=entitlement.environment,
        access=entitlement.access,
        why=list(entitlement.via),
    )
    if not entitlement.usable:
        raise GrantRequired(
            f"The role {role} in account {account_id} needs an approved request first."
            if entitlement.access != EntitlementAccess.BREAK_GLASS
            else f"The role {role} in account {account_id} needs a break-glass activation first."
        )
    context.update(
        sign_in=authentication.pk if authentication is not None else None,
        require_mfa=entitlement.require_mfa,
    )
    stepped_up = step_up_refusal(entitlement, authentication, action=kind, now=now)
    if stepped_up is not None:
        raise stepped_up
    grant: Grant | None = None
    if entitlement.grant_id is not None:
        # Lock the grant: a revocation racing this issuance either waits for it (and its deny
        # policy covers the session) or commits first and this re-check refuses.
        grant = Grant.objects.select_for_update().filter(pk=entitlement.grant_id).first()
        if grant is None or not grant.is_active_at(now):
            raise GrantEnded("Your grant for this role has ended or been revoked.")
        context.update(
            grant_id=grant.pk, request_id=grant.request_id, break_glass=grant.break_glass
        )
    session_name = session_name_for(user.email)
    grant_ends_at = grant.ends_at if grant is not None else None
    try:
        chained = sts.broker_is_chained()
    except sts.StsError as error:
        raise _failure(error, context) from None
    duration = session_duration(
        role_max=entitlement.max_session,
        requested=requested,
        grant_ends_at=grant_ends_at,
        chained=chained,
        now=now,
    )
    tags = session_tags(user, entitlement, mfa=shows_mfa(entitlement, authentication, now=now))
    context.update(
        role_arn=entitlement.role_arn,
        session_name=session_name,
        source_identity=session_name,
        duration_seconds=int(duration.total_seconds()),
        chained=chained,
        tags=dict(tags),
    )
    try:
        session = sts.assume_role(
            sts.AssumeRoleRequest(
                role_arn=entitlement.role_arn,
                session_name=session_name,
                source_identity=session_name,
                duration_seconds=int(duration.total_seconds()),
                tags=tags,
            )
        )
    except sts.StsError as error:
        raise _failure(error, context) from None
    # The console link is an outbound HTTP call: make it before the audit append, which holds
    # the chain-head lock until commit and would make every audited action wait on AWS.
    console_url, link_failure = None, None
    if kind == SessionIssuance.Kind.CONSOLE:
        try:
            console_url = sts.console_link(session.credentials, region=entitlement.region)
        except sts.ConsoleLinkFailed as error:
            link_failure = error
    expires_at = now + duration
    issuance = SessionIssuance(
        user=user,
        account_id=account_id,
        role_id=role,
        grant=grant,
        api_token=api_token,
        kind=kind,
        access=entitlement.access,
        role_arn=entitlement.role_arn,
        session_name=session_name,
        source_identity=session_name,
        region=session.region,
        endpoint=session.endpoint,
        aws_request_id=session.aws_request_id,
        duration=duration,
        issued_at=now,
        expires_at=expires_at,
        ip=ip,
    )
    context.update(
        region=session.region,
        endpoint=session.endpoint,
        aws_request_id=session.aws_request_id,
        assumed_role_arn=session.assumed_role_arn,
        expires_at=expires_at.isoformat(),
        failed_over=[vars(attempt) for attempt in session.attempts],
    )
    # The row and its event in one statement; the event's data gains issuance_id.
    record_event_with_row(
        issuance,
        "issuance.issued",
        link="issuance_id",
        actor=user,
        account_id=account_id,
        target=_audit_target(account_id, role),
        ip=ip,
        now=now,
        data=context,
    )
    context["issuance_id"] = issuance.pk
    metrics.record_issuance(account=account_id, role=role, region=session.region, kind=kind)
    if link_failure is not None:
        # The session exists (CloudTrail has the AssumeRole), so its row and the event above
        # are kept; the failure event says the person never got into the console.
        raise ConsoleSignInFailed(
            f"AWS issued the session but the console sign-in link failed: {link_failure.message}"
        )
    return IssuedSession(
        issuance_id=issuance.pk,
        account_id=account_id,
        role=role,
        role_arn=entitlement.role_arn,
        session_name=session_name,
        region=session.region,
        duration=duration,
        expires_at=expires_at,
        credentials=session.credentials,
        console_url=console_url,
    )


# Written once rather than compiled by the ORM on every issuance (issue 19: the compilation cost
# more CPU than PostgreSQL spends on the statement).
_LOCK_IDENTITY = (
    f"SELECT is_active, directory_groups FROM {User._meta.db_table}"  # noqa: S608 (constant)
    " WHERE id = %s FOR UPDATE"
)


def _lock_identity(user: User) -> tuple[bool, list[str]]:
    """The identity's current (is_active, directory_groups), its row locked until commit; a
    deleted identity reads as inactive."""
    if connection.vendor != "postgresql":
        found = (
            User.objects.select_for_update()
            .filter(pk=user.pk)
            .values_list("is_active", "directory_groups")
            .first()
        )
        return (bool(found[0]), list(found[1])) if found else (False, [])
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_IDENTITY, [user.pk])
        row = cursor.fetchone()
    if row is None:
        return False, []
    active, groups = row
    # Django reads jsonb as text and decodes it in the field; a raw cursor gets the text.
    return bool(active), json.loads(groups) if isinstance(groups, str) else list(groups)


def _failure(error: sts.StsError, context: dict[str, Any]) -> IssuanceFailed:
    context["attempts"] = [vars(attempt) for attempt in error.attempts]
    if isinstance(error, sts.StsRefused):
        context.update(
            sts_code=error.code, region=error.region, aws_request_id=error.aws_request_id
        )
        return SessionRefusedByAws(f"AWS refused the session ({error.code}): {error.message}")
    return StsUnreachable(
        "AWS STS could not be reached in any configured region. Try again in a minute."
    )
