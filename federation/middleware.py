"""Response headers Django does not set by itself (SECURITY.md §3)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

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
        if request.user.is_authenticated:
            self._enforce_idle_timeout(request)
        response = self.get_response(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            content_security_policy(settings.BASE_URL, settings.AWS_FEDERATION_URL),
        )
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
