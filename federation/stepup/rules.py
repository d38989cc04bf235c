"""The step-up rule (SPEC §4 Step-up): when a sign-in is good enough for a role.

A role with ``require_mfa`` is issued only on a sign-in whose IdP asserted MFA
(``SignIn.mfa``, federation/idp/mfa.py) and, with ``max_auth_age``, only while the asserted
authentication time is that recent. Which sign-in is judged is the caller's to say: the portal
judges the sign-in its browser session stands on, the API the person's latest sign-in (the
freshest authentication they made at their IdP). Everything else is refused with
``StepUpRequired``, which carries the URL of a fresh sign-in that asks for MFA.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest

from federation.entitlements.resolve import Entitlement
from federation.idp.signin import SIGN_IN_SESSION_KEY
from federation.models import SignIn, User
from federation.refusals import Refused


class StepUpRequired(Refused):
    """The role needs a fresh MFA sign-in first; ``detail["step_up_url"]`` is where to get it."""

    code = "step_up_required"
    status = 403
    title = "Sign in again with MFA"
    public_detail = ("step_up_url",)


def step_up_path(account_id: str, role: str, action: str) -> str:
    """The local path of the step-up page for one issuance (``federation/stepup/views.py``)."""
    return "/step-up/?" + urlencode({"account": account_id, "role": role, "action": action})


def step_up_refusal(
    entitlement: Entitlement,
    authentication: SignIn | None,
    *,
    action: str,
    now: datetime,
) -> StepUpRequired | None:
    """Why ``authentication`` is not enough for ``entitlement`` now, or None when it is (or the
    role needs no step-up)."""
    if not entitlement.require_mfa:
        return None
    url = settings.BASE_URL + step_up_path(entitlement.account_id, entitlement.role, action)
    detail = {
        "step_up_url": url,
        "sign_in": authentication.pk if authentication is not None else None,
        "mfa": bool(authentication and authentication.mfa),
    }
    where = f"the role {entitlement.role} in {entitlement.account_alias}"
    if authentication is None or not authentication.mfa:
        return StepUpRequired(
            f"{where[0].upper()}{where[1:]} needs a sign-in with multi-factor authentication, "
            f"and your identity provider did not report one. Sign in again with MFA: {url}",
            detail=detail,
        )
    age_limit = entitlement.max_auth_age
    if age_limit is not None:
        at = authentication.authenticated_at
        minutes = int(age_limit.total_seconds() // 60)
        if at is None or now - at > age_limit:
            detail["authenticated_at"] = at.isoformat() if at else None
            return StepUpRequired(
                f"{where[0].upper()}{where[1:]} needs an MFA sign-in from the last {minutes} "
                f"minutes. Sign in again with MFA: {url}",
                detail=detail,
            )
    return None


def shows_mfa(entitlement: Entitlement, authentication: SignIn | None, *, now: datetime) -> bool:
    """Whether a session issued on ``authentication`` may carry the tag MFA=true: the sign-in
    showed MFA (and, for a role with a maximum age, recently enough)."""
    if authentication is None or not authentication.mfa:
        return False
    age_limit = entitlement.max_auth_age if entitlement.require_mfa else None
    if age_limit is None:
        return True
    at = authentication.authenticated_at
    return at is not None and now - at <= age_limit


def session_sign_in(request: HttpRequest, user: User) -> SignIn | None:
    """The sign-in this browser session stands on (set at sign-in), if it is ``user``'s."""
    sign_in_id = request.session.get(SIGN_IN_SESSION_KEY)
    if not isinstance(sign_in_id, int):
        return None
    return SignIn.objects.filter(pk=sign_in_id, user=user).first()


def latest_sign_in(user: User) -> SignIn | None:
    """The person's latest sign-in through this identity: what the API judges, since an API
    token carries no authentication of its own."""
    return SignIn.objects.filter(user=user).order_by("-at", "-pk").first()
