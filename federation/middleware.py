"""The HTTP edge (SECURITY.md §3): response headers Django does not set by itself, and the
session's idle and absolute time limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from federation.audit.chain import record_event, request_ip
from federation.models import User

# Set by federation/idp/signin.py complete_sign_in when the session is created.
SIGNED_IN_AT = "signed_in_at"

# AWS's federation endpoint answers the console login with a redirect to the Destination we
# send (federation/aws/sts.py console_destination: https://<region>.console.aws.amazon.com).
# Chromium checks form-action on every hop of a form submission's redirects, so the console
# button needs both origins.
AWS_CONSOLE_ORIGINS = "https://*.console.aws.amazon.com"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@lru_cache(maxsize=8)
def content_security_policy(base_url: str, federation_url: str) -> str:
    """The CSP for this deployment. No inline script or style anywhere, so it can be strict.

    form-action allows, besides 'self', exactly the origin of AWS_FEDERATION_URL (the console
    button POSTs to /sessions/, which redirects there) and the console it forwards to.
    """
    form_action = ["'self'"]
    federation = _origin(federation_url)
    if federation != _origin(base_url):
        form_action.append(federation)
    form_action.append(AWS_CONSOLE_ORIGINS)
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action {' '.join(form_action)}; "
        "frame-ancestors 'none'"
    )


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            content_security_policy(settings.BASE_URL, settings.AWS_FEDERATION_URL),
        )
        if request.user.is_authenticated:
            # Pages of a signed-in user name their accounts: never cache them in shared caches.
            response.headers.setdefault("Cache-Control", "no-store")
        return response


class SessionLimitsMiddleware:
    """Ends a session idle longer than SESSION_IDLE_TIMEOUT_SECONDS, or older than
    SESSION_MAX_AGE_SECONDS (SESSION_COOKIE_AGE) since its sign-in, whatever was written to it
    since: Django renews the cookie's expiry on every session write (the idle stamp included),
    so the absolute limit is counted from the sign-in time kept in the session. The person is
    logged out, sent to sign in again and the end is audited (``session.expired``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if isinstance(user, User) and user.is_authenticated:
            expired = self._expired(request)
            if expired:
                return self._end(request, user, expired)
        return self.get_response(request)

    @staticmethod
    def _expired(request: HttpRequest) -> str:
        now = int(time.time())
        signed_in_at = request.session.get(SIGNED_IN_AT)
        if not isinstance(signed_in_at, int):
            # Sessions from before the stamp existed (and force_login in tests): the limit
            # starts now, so they too end at most one SESSION_MAX_AGE_SECONDS later.
            request.session[SIGNED_IN_AT] = now
        elif now - signed_in_at > settings.SESSION_COOKIE_AGE:
            return "absolute"
        last = request.session.get("last_seen")
        if isinstance(last, int) and now - last > settings.SESSION_IDLE_TIMEOUT_SECONDS:
            return "idle"
        if not isinstance(last, int) or now - last > 60:
            request.session["last_seen"] = now
        return ""

    @staticmethod
    def _end(request: HttpRequest, user: User, limit: str) -> HttpResponse:
        signed_in_at = request.session.get(SIGNED_IN_AT)
        logout(request)  # flushes the session
        with transaction.atomic():
            record_event(
                "session.expired",
                actor=user,
                target=request.path,
                ip=request_ip(request),
                now=timezone.now(),
                data={"limit": limit, "signed_in_at": signed_in_at},
            )
        return redirect_to_login(request.get_full_path())
