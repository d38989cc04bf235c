"""JSON API under /api/v1/ for the fedaccess CLI and automation (SPEC §3.4, §3.5).

Authenticated only by a personal token (``Authorization: Bearer fedat_...``), never by the
session cookie, so CSRF does not apply and a browser session cannot be ridden into the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from federation.audit.chain import record_refusal, request_ip
from federation.entitlements.resolve import resolve_entitlements
from federation.input_guard import load_json
from federation.issuance.openapi import openapi_document
from federation.issuance.service import InvalidIssuanceRequest, issue_session
from federation.issuance.tokens import (
    TokenRefused,
    authenticate_api_token,
    latest_sign_in_of,
    revoke_api_token,
)
from federation.models import (
    ACCOUNT_ID_RE,
    MAX_SESSION,
    MIN_SESSION,
    SLUG_RE,
    ApiToken,
    SessionIssuance,
)
from federation.observability import context
from federation.refusals import Refused, refusal_json

_ACCOUNT = re.compile(ACCOUNT_ID_RE)
_ROLE = re.compile(SLUG_RE)
_CREDENTIALS_KEYS = frozenset({"account", "role", "duration_seconds"})
# Beyond this the service's timedelta arithmetic overflows; in range, the service refuses
# anything outside MIN_SESSION..MAX_SESSION with its own (audited) 400.
_MAX_DURATION_SECONDS = 10**7


class NoSuchEndpoint(Refused):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(Refused):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


def api_method(method: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Like require_GET/require_POST, but the 405 is JSON like every other API answer."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != method and not (method == "GET" and request.method == "HEAD"):
                response = refusal_json(
                    MethodNotAllowed(f"{request.method} is not allowed here; use {method}.")
                )
                response["Allow"] = "GET, HEAD" if method == "GET" else method
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


@csrf_exempt  # it changes nothing; a POST to a mistyped path is a JSON 404, not a CSRF page
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/v1/: a JSON 404, never the HTML page."""
    return refusal_json(
        NoSuchEndpoint("No such API endpoint; see /api/v1/openapi.json for the ones there are.")
    )


# A token view gets the authenticated token and the moment the request is handled at: the
# clock is read once per request, here.
TokenView = Callable[[HttpRequest, ApiToken, datetime], HttpResponse]


def token_required(view: TokenView) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, **_path: Any) -> HttpResponse:
        # Path arguments stay on request.resolver_match; the view reads them there.
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return refusal_json(TokenRefused("Send Authorization: Bearer <personal token>."))
        now = timezone.now()
        try:
            token = authenticate_api_token(value.strip(), now=now, request=request)
        except TokenRefused as refusal:
            return refusal_json(refusal)
        context.set_user(token.user.label)  # the person on this request's log lines
        return view(request, token, now)

    return csrf_exempt(wrapper)


@api_method("GET")
@token_required
def entitlements(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    user = token.user
    items = resolve_entitlements(user.directory_groups, now=now, user_id=user.pk)
    body = {
        "entitlements": [
            {
                "account": e.account_id,
                "account_alias": e.account_alias,
                "business_unit": e.business_unit,
                "environment": e.environment,
                "region": e.region,
                "role": e.role,
                "access": e.access,
                "usable": e.usable,
                "max_session_seconds": int(e.max_session.total_seconds()),
                "grant_ends_at": e.grant_ends_at.isoformat() if e.grant_ends_at else None,
                "require_mfa": e.require_mfa,
                "break_glass": e.break_glass_max is not None,
            }
            for e in items
        ]
    }
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


@api_method("POST")
@token_required
def console(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """``fedaccess console``: a console sign-in link (a bearer login: never cached or logged)."""
    return _issue(request, token, now, kind=SessionIssuance.Kind.CONSOLE)


@api_method("POST")
@token_required
def revoke_this_token(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """``fedaccess logout``: the presenting token revokes itself (audited like the page)."""
    revoke_api_token(token.user, token_id=token.pk, now=now, ip=request_ip(request))
    return JsonResponse({"revoked": token.prefix})


def refuse_malformed(
    request: HttpRequest, token: ApiToken, refusal: Refused, *, now: datetime
) -> HttpResponse:
    """Audit a malformed API request (they are what probing looks like) and answer it as JSON."""
    record_refusal(
        "api.request_refused",
        refusal,
        actor=token.user,
        target=request.path,
        ip=request_ip(request),
        now=now,
    )
    return refusal_json(refusal)


def _credentials_request(body: bytes) -> tuple[str, str, int | None]:
    """account, role and duration_seconds from the body, as the OpenAPI document states them.
    Raises a 400 refusal (UnsafeInput or InvalidIssuanceRequest) for anything else."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise InvalidIssuanceRequest("The body must be a JSON object.")
    unknown = sorted(set(payload) - _CREDENTIALS_KEYS)
    if unknown:
        raise InvalidIssuanceRequest(
            f"Unknown field {unknown[0]!r}; send account, role and optionally duration_seconds."
        )
    account, role = payload.get("account"), payload.get("role")
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise InvalidIssuanceRequest("account must be an AWS account id of 12 digits.")
    if not isinstance(role, str) or not _ROLE.match(role):
        raise InvalidIssuanceRequest(
            "role must be a role name: lowercase letters, digits and hyphens, 1 to 63 characters."
        )
    duration = payload.get("duration_seconds")
    if isinstance(duration, float) and duration.is_integer():
        # JSON Schema's integer: 1800.0 is one, as the document's readers (and schemathesis)
        # take it.
        duration = int(duration)
    if duration is not None and (
        not isinstance(duration, int)
        or isinstance(duration, bool)
        or not 0 < duration <= _MAX_DURATION_SECONDS
    ):
        raise InvalidIssuanceRequest(
            f"duration_seconds must be a whole number of seconds from "
            f"{int(MIN_SESSION.total_seconds())} to {int(MAX_SESSION.total_seconds())}."
        )
    return account, role, duration


@api_method("POST")
@token_required
def credentials(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    return _issue(request, token, now, kind=SessionIssuance.Kind.CLI)


def _issue(request: HttpRequest, token: ApiToken, now: datetime, *, kind: str) -> HttpResponse:
    try:
        account, role, duration = _credentials_request(request.body)
    except Refused as refusal:
        return refuse_malformed(request, token, refusal, now=now)
    try:
        issued = issue_session(
            token.user,
            account_id=account,
            role=role,
            kind=kind,
            requested=timedelta(seconds=duration) if duration is not None else None,
            now=now,
            ip=request_ip(request),
            api_token=token,
            # A token carries no authentication of its own: the step-up rule judges the
            # person's latest sign-in (docs/step-up.md).
            # (read with the token: latest_sign_in_of is federation.stepup.rules.latest_sign_in).
            authentication=latest_sign_in_of(token),
        )
    except Refused as problem:
        return refusal_json(problem)
    if kind == SessionIssuance.Kind.CONSOLE:
        expiration = issued.expires_at.isoformat().replace("+00:00", "Z")
        response = JsonResponse({"SigninUrl": issued.console_url, "Expiration": expiration})
    else:
        response = JsonResponse(issued.credentials.credential_process())
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


@api_method("GET")
def openapi(request: HttpRequest) -> HttpResponse:
    return JsonResponse(openapi_document())
