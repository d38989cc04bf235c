"""The CLI's browser login: two JSON endpoints for the CLI (start, poll) and the portal page
where the signed-in person confirms the code (/device/). Thin: the service decides."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from federation.audit.chain import request_ip
from federation.device.service import (
    LIFETIME,
    POLL_SECONDS,
    DeviceLoginRefused,
    decide_device_login,
    find_pending,
    normalise_user_code,
    redeem_device_code,
    start_device_login,
)
from federation.input_guard import load_json
from federation.issuance.api import api_method
from federation.models import User
from federation.refusals import Refused, refusal_json


class BadDeviceRequest(DeviceLoginRefused):
    code = "invalid_request"
    status = 400


def _object(request: HttpRequest, allowed: frozenset[str]) -> dict[str, Any]:
    payload = load_json(request.body)
    if not isinstance(payload, dict):
        raise BadDeviceRequest("The body must be a JSON object.")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise BadDeviceRequest(f"Unknown field {unknown[0]!r}.")
    return payload


@csrf_exempt  # no cookie is read: the CLI holds no session, and starting changes nobody's access
@api_method("POST")
def start(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/device/start {"client": "laptop"}: a device code for the CLI to poll with."""
    try:
        client = _object(request, frozenset({"client"})).get("client", "")
        if not isinstance(client, str) or len(client) > 100:
            raise BadDeviceRequest("client must be text of at most 100 characters.")
        started = start_device_login(
            client="".join(ch for ch in client if ch.isprintable()), now=timezone.now()
        )
    except Refused as refusal:
        return refusal_json(refusal)
    response = JsonResponse(
        {
            "device_code": started.device_code,
            "user_code": started.login.user_code,
            "verification_uri": started.verification_uri,
            "verification_uri_complete": started.verification_uri_complete,
            "expires_in": int(LIFETIME.total_seconds()),
            "interval": POLL_SECONDS,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt  # the device code in the body is the credential; no cookie is read
@api_method("POST")
def token(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/device/token {"device_code": ...}: the token once approved, else why not."""
    try:
        device_code = _object(request, frozenset({"device_code"})).get("device_code")
        if not isinstance(device_code, str) or not 0 < len(device_code) <= 100:
            raise BadDeviceRequest("device_code must be the code fedaccess login received.")
        plaintext, expires_at = redeem_device_code(
            device_code, now=timezone.now(), ip=request_ip(request)
        )
    except Refused as refusal:
        return refusal_json(refusal)
    response = JsonResponse({"token": plaintext, "expires_at": expires_at.isoformat()})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest) -> HttpResponse:
    """/device/: the signed-in person confirms (or denies) the code their terminal shows."""
    user = request.user
    assert isinstance(user, User)
    now = timezone.now()
    source = request.POST if request.method == "POST" else request.GET
    typed = source.get("code", "")[:20]
    context: dict[str, Any] = {"code": normalise_user_code(typed) or typed, "now": now}
    status = 200
    if request.method == "POST" and source.get("action") in ("approve", "deny"):
        try:
            login = decide_device_login(
                typed,
                actor=user,
                approve=source["action"] == "approve",
                now=now,
                ip=request_ip(request),
            )
        except DeviceLoginRefused as refusal:
            context["error"] = refusal.message
            status = refusal.status
        else:
            context["decided"] = login
    elif typed:
        context["pending"] = find_pending(typed, now=now)
        if context["pending"] is None:
            context["error"] = (
                "No command-line sign-in is waiting with that code (codes last 10 minutes)."
            )
            status = 404
    return render(request, "federation/device.html", context, status=status)
