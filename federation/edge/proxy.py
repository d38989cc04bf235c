"""Which address and scheme a request came from when the service runs behind proxies.

Forwarded headers are written by whoever sends the request, so they are believed only when the
deployment says how many proxies of its own stand in front (``TRUSTED_PROXY_COUNT``, default 0:
never). With N trusted proxies each appends the address it received the request from to
X-Forwarded-For, so the client is the N-th address from the right; anything further left was
sent by the client and is ignored. X-Forwarded-Proto is believed on the same condition
(settings.py sets ``SECURE_PROXY_SSL_HEADER`` only then). Gunicorn itself is told to trust no
forwarded header (gunicorn.conf.py), so this is the one place that decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def forwarded_client(forwarded_for: str, trusted_proxies: int) -> str | None:
    """The client address X-Forwarded-For names, seen through ``trusted_proxies`` proxies, or
    None when the header is shorter than that (a proxy that does not append) or malformed."""
    if trusted_proxies < 1:
        return None
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    if len(hops) < trusted_proxies:
        return None
    candidate = hops[-trusted_proxies]
    # Some proxies (Azure's) append the client's port: "192.0.2.7:51234", "[2001:db8::1]:51234".
    if candidate.startswith("["):
        inner, closed, _port = candidate[1:].partition("]")
        candidate = inner if closed else ""
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


class TrustedProxyMiddleware:
    """First in MIDDLEWARE: rewrites REMOTE_ADDR to the client's address when (and only when)
    TRUSTED_PROXY_COUNT proxies are declared, so the audit log, the rate limits and every other
    reader of REMOTE_ADDR see the person, not the load balancer."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        trusted = settings.TRUSTED_PROXY_COUNT
        if trusted:
            client = forwarded_client(request.META.get("HTTP_X_FORWARDED_FOR", ""), trusted)
            if client is not None:
                request.META["REMOTE_ADDR"] = client
        return self.get_response(request)
