"""Portal actions that hand out AWS sessions, and the personal API token page (SPEC §3.4).

Thin views: they check who is asking, read the form, call one service and render. The rules
live in ``federation.issuance.service`` and ``federation.issuance.tokens``.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from federation.audit.chain import request_ip
from federation.issuance.service import (
    IssuedSession,
    issue_session,
)
from federation.issuance.tokens import (
    TokenRefused,
    create_api_token,
    list_api_tokens,
    revoke_api_token,
)
from federation.models import SessionIssuance, User
from federation.refusals import Refused, refusal_json, refusal_page
from federation.stepup.rules import StepUpRequired, session_sign_in, step_up_path


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.POST.get("format") == "json"


def _no_store(response: HttpResponse, *, referrer_policy: str = "no-referrer") -> HttpResponse:
    # Credentials and bearer sign-in links: never cached, never leaked through a Referer.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    response["Referrer-Policy"] = referrer_policy
    return response


# A page carrying forms cannot be `no-referrer`: browsers then send `Origin: null` with its
# POSTs, and the CSRF origin check refuses them. `same-origin` sends no Referer to any other
# site; the token itself is in the body, never in the URL, so nothing leaks to our own origin.
_FORM_PAGE_POLICY = "same-origin"


def _minutes(value: str | None) -> timedelta | None:
    if not value:
        return None
    try:
        minutes = int(value)
    except ValueError:
        minutes = 0
    # Out of range (or not a number): zero, which the service refuses with a clear message.
    return timedelta(minutes=minutes if 0 < minutes <= 100_000 else 0)


@login_required
@require_POST
def issue(request: HttpRequest) -> HttpResponse:
    """POST account, role, action=console|cli [, duration_minutes]: a console redirect, or
    credentials (JSON when asked for, else a page). A role that needs a fresh MFA sign-in
    links the browser to ``/step-up/``, which leads through the IdP and back to the issuance
    (once: ``step_up=1`` marks the return, which is never sent round again)."""
    user = request.user
    assert isinstance(user, User)
    kind = request.POST.get("action", "")
    account_id = request.POST.get("account", "")
    role = request.POST.get("role", "")
    try:
        issued = issue_session(
            user,
            account_id=account_id,
            role=role,
            kind=kind,
            requested=_minutes(request.POST.get("duration_minutes")),
            now=timezone.now(),
            ip=request_ip(request),
            authentication=session_sign_in(request, user),
        )
    except StepUpRequired as problem:
        if _wants_json(request) or request.POST.get("step_up") == "1":
            return _problem_response(request, problem)
        # A link, not a redirect: the CSP's form-action 'self' would stop this form POST from
        # being redirected on to the IdP. The service validated account, role and kind first.
        return refusal_page(
            request,
            problem,
            back_url=step_up_path(account_id, role, kind),
            back_label="Sign in again with MFA",
        )
    except Refused as problem:
        return _problem_response(request, problem)
    if kind == SessionIssuance.Kind.CONSOLE:
        assert issued.console_url is not None
        if _wants_json(request):
            return _no_store(
                JsonResponse(
                    {"SigninUrl": issued.console_url, "Expiration": _iso(issued)},
                )
            )
        return _no_store(HttpResponseRedirect(issued.console_url))
    if _wants_json(request):
        return _no_store(JsonResponse(issued.credentials.credential_process()))
    return _no_store(
        render(
            request,
            "federation/credentials.html",
            {
                "issued": issued,
                "credentials": issued.credentials,
                "credential_json": json.dumps(issued.credentials.credential_process(), indent=2),
            },
        )
    )


def _iso(issued: IssuedSession) -> str:
    return issued.expires_at.isoformat().replace("+00:00", "Z")


def _problem_response(request: HttpRequest, problem: Refused) -> HttpResponse:
    if _wants_json(request):
        return _no_store(refusal_json(problem))
    return refusal_page(request, problem)


def _days(value: str) -> timedelta:
    try:
        days = int(value)
    except ValueError:
        days = 0
    # Out of range (or not a number): zero days, which the service refuses with a clear
    # message; a huge number would overflow timedelta (a 500).
    return timedelta(days=days if 0 < days <= 100_000 else 0)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """List my tokens; POST name + days creates one and shows it once."""
    user = request.user
    assert isinstance(user, User)
    now = timezone.now()
    created = None
    error = ""
    status = 200
    if request.method == "POST":
        try:
            created = create_api_token(
                user,
                name=request.POST.get("name", ""),
                lifetime=_days(request.POST.get("days", "30")),
                now=now,
                ip=request_ip(request),
            )
        except TokenRefused as refusal:
            error, status = refusal.message, refusal.status
    response = render(
        request,
        "federation/api_tokens.html",
        {
            "tokens": list_api_tokens(user),
            "created": created,
            "error": error,
            "now": now,
            "base_url": settings.BASE_URL,
        },
        status=status,
    )
    return _no_store(response, referrer_policy=_FORM_PAGE_POLICY)


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    try:
        revoke_api_token(user, token_id=token_id, now=timezone.now(), ip=request_ip(request))
    except TokenRefused as refusal:
        return refusal_page(
            request, refusal, back_url="/tokens/", back_label="Back to my tokens", recorded=False
        )
    return redirect("api-tokens")
