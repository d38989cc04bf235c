"""``/step-up/``: the way back to an issuance through a fresh MFA sign-in (SPEC §4 Step-up).

The portal redirects here when issuance answers ``step_up_required``; the CLI prints this URL.
Thin: read the target, judge the browser session's sign-in with the one rule
(``rules.step_up_refusal``) and then either offer the issuance (a button: a link alone never
makes a browser issue a session), or send the browser to its IdP asking for a fresh MFA
sign-in, or, when the IdP came back without MFA, say so instead of looping.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from federation.entitlements.resolve import find_entitlement
from federation.models import ACCOUNT_ID_RE, SLUG_RE, IdentityProvider, SessionIssuance, User
from federation.refusals import Refused, refusal_page
from federation.stepup.rules import StepUpRequired, session_sign_in, step_up_path, step_up_refusal


class StepUpUnavailable(Refused):
    code = "step_up_unavailable"
    status = 400
    title = "Cannot sign in again with MFA"


@never_cache
@login_required
@require_GET
def step_up(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    account_id = request.GET.get("account", "")
    role = request.GET.get("role", "")
    action = request.GET.get("action", "")
    if (
        not re.fullmatch(ACCOUNT_ID_RE, account_id)
        or not re.fullmatch(SLUG_RE, role)
        or action not in SessionIssuance.Kind.values
    ):
        return refusal_page(
            request,
            StepUpUnavailable("The link names no valid account, role and action (console or cli)."),
            recorded=False,
        )
    now = timezone.now()
    entitlement = find_entitlement(
        user.directory_groups, account_id, role, now=now, user_id=user.pk
    )
    if entitlement is None or not entitlement.usable:
        return refusal_page(
            request,
            StepUpUnavailable(f"You cannot use the role {role} in account {account_id} now."),
            recorded=False,
        )
    refusal = step_up_refusal(entitlement, session_sign_in(request, user), action=action, now=now)
    if refusal is None:
        return render(
            request,
            "federation/step_up.html",
            {"e": entitlement, "action": action},
        )
    if request.GET.get("done") == "1":
        # The IdP answered the fresh sign-in without (recent) MFA: say so, do not loop.
        return refusal_page(
            request,
            StepUpRequired(
                "Your identity provider signed you in again but did not report multi-factor "
                "authentication (or reported an old one), so this role cannot be issued. "
                "Ask your identity provider's administrators whether MFA is required for this "
                "application, then try again.",
            ),
            back_url=step_up_path(account_id, role, action),
            back_label="Try again",
            recorded=False,
        )
    idp = user.idp
    if idp is None or not idp.enabled:
        return refusal_page(
            request,
            StepUpUnavailable("Your account has no identity provider to sign in again with."),
            recorded=False,
        )
    protocol = "saml" if idp.protocol == IdentityProvider.Protocol.SAML else "oidc"
    back = step_up_path(account_id, role, action) + "&done=1"
    query = urlencode({"next": back, "step_up": "1"})
    return HttpResponseRedirect(f"/{protocol}/{idp.slug}/login/?{query}")
