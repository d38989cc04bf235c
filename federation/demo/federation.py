"""A local stand-in for AWS's console federation endpoint, mounted only in demo mode (SPEC §6).

It speaks the two actions the broker uses: ``getSigninToken`` (checks the session's credentials
against the local STS and answers a one-time token) and ``login`` (shows "you would now be in
account X as role Y"). Nothing here is reachable outside DEMO_MODE.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from federation.aws import sts
from federation.demo import demo_only

_TOKEN_TTL_SECONDS = 15 * 60
_ASSUMED_ROLE_RE = re.compile(r"^arn:aws[\w-]*:sts::(\d{12}):assumed-role/([^/]+)/(.+)$")


@demo_only
@require_GET
def federation(request: HttpRequest) -> HttpResponse:
    action = request.GET.get("Action", "")
    if action == "getSigninToken":
        return _get_signin_token(request)
    if action == "login":
        return _login(request)
    return JsonResponse({"error": "unknown Action"}, status=400)


def _get_signin_token(request: HttpRequest) -> HttpResponse:
    try:
        session = json.loads(request.GET.get("Session", ""))
        credentials = sts.Credentials(
            access_key_id=str(session["sessionId"]),
            secret_access_key=str(session["sessionKey"]),
            session_token=str(session["sessionToken"]),
            expiration=datetime.now(UTC),
        )
    except (ValueError, KeyError, TypeError):
        return JsonResponse(
            {"error": "Session must be a JSON object of temporary keys"}, status=400
        )
    try:
        arn = sts.caller_identity(credentials)
    except (ClientError, BotoCoreError):
        # Like the real endpoint: credentials STS does not know get a plain refusal.
        return JsonResponse({"error": "invalid session"}, status=400)
    token = secrets.token_urlsafe(32)
    cache.set(f"demo-federation:{token}", arn, _TOKEN_TTL_SECONDS)
    return JsonResponse({"SigninToken": token})


def _login(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("SigninToken", "")
    key = f"demo-federation:{token}"
    arn = cache.get(key) if token else None
    if arn is None:
        return render(
            request,
            "federation/demo_federation.html",
            {"error": "unknown or used token"},
            status=400,
        )
    cache.delete(key)  # one use, like the real token
    match = _ASSUMED_ROLE_RE.fullmatch(str(arn))
    response = render(
        request,
        "federation/demo_federation.html",
        {
            "arn": arn,
            "account_id": match.group(1) if match else "?",
            "role": match.group(2) if match else "?",
            "session_name": match.group(3) if match else "?",
            "destination": request.GET.get("Destination", ""),
            "issuer": request.GET.get("Issuer", ""),
        },
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
