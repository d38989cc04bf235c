"""Response headers Django does not set by itself (SECURITY.md §3)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

# No inline script or style anywhere, so the policy can be strict.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            self._enforce_idle_timeout(request)
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        if request.user.is_authenticated:
            # Pages of a signed-in user name their accounts: never cache them in shared caches.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @staticmethod
    def _enforce_idle_timeout(request: HttpRequest) -> None:
        now = int(time.time())
        last = request.session.get("last_seen")
        if isinstance(last, int) and now - last > settings.SESSION_IDLE_TIMEOUT_SECONDS:
            logout(request)
            return
        if not isinstance(last, int) or now - last > 60:
            request.session["last_seen"] = now
