"""Sign-in chooser, logout, health endpoints and the CSRF failure page (SPEC §3.4)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import logout
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from federation.audit.chain import record_event, request_ip
from federation.idp.saml import logout_url as saml_logout_url
from federation.models import IdentityProvider, User

logger = logging.getLogger(__name__)


@require_GET
def login_chooser(request: HttpRequest) -> HttpResponse:
    idps = IdentityProvider.objects.filter(enabled=True).order_by("slug")
    return render(request, "federation/login.html", {"idps": idps})


@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "federation/logout.html")
    user = request.user
    # SAML single logout, where the IdP offers it: a link, not a redirect, because the CSP's
    # form-action 'self' would block a form POST that redirects to the IdP.
    idp_logout_url = saml_logout_url(user) if isinstance(user, User) else ""
    logout(request)  # flushes the session
    if idp_logout_url:
        return render(request, "federation/saml_logged_out.html", {"url": idp_logout_url})
    return redirect("login")


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    ok = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        logger.exception("readiness: database unreachable")
        checks["database"] = "unreachable"
        ok = False
    if settings.CELERY_BROKER_URL:
        checks["broker"] = _broker_status()
        ok = ok and checks["broker"] == "ok"
    else:
        checks["broker"] = "eager (no broker configured)"
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


def _broker_status() -> str:
    from kombu.connection import Connection

    try:
        conn = Connection(settings.CELERY_BROKER_URL, connect_timeout=2)  # type: ignore[no-untyped-call]
        with conn:
            conn.ensure_connection(max_retries=1, timeout=2)  # type: ignore[no-untyped-call]
        return "ok"
    except Exception:
        logger.warning("readiness: broker unreachable")
        return "unreachable"


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused cross-site (or stale) form post: a clear page and an audit event, so forged
    issuance, approval or revocation attempts show up in the log."""
    user = request.user if isinstance(request.user, User) else None
    record_event(
        "request.csrf_refused",
        actor=user or "anonymous",
        target=request.path[:500],
        ip=request_ip(request),
        data={"method": request.method, "reason": reason[:200]},
    )
    return render(request, "federation/csrf_failure.html", status=403)
