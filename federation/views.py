"""Health endpoints and the CSRF failure page (SPEC §3.4); sign-in and logout are in idp/."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from federation.audit.chain import record_event, request_ip
from federation.audit.sequencer import backlog
from federation.models import User

logger = logging.getLogger(__name__)


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
    if checks["database"] == "ok":
        checks["audit_sequencing"] = _sequencing_status()
        ok = ok and checks["audit_sequencing"].startswith("ok")
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


def _sequencing_status() -> str:
    """Behind when the oldest unsequenced audit event has waited past the bound: the sequencer
    is down or cannot keep up, and checkpoints would leave events out (docs/audit.md)."""
    pending = backlog()
    lag = pending.lag(timezone.now()).total_seconds()
    limit = settings.AUDIT_SEQUENCING_LAG_LIMIT.total_seconds()
    state = "ok" if lag <= limit else "behind"
    return f"{state} (lag {lag:.1f} s, limit {limit:.0f} s, {pending.pending} pending)"


def _broker_status() -> str:
    from kombu.connection import Connection

    # The broker's own connect and socket timeouts (settings), so a hung broker answers
    # "unreachable" within them instead of hanging the probe (issue #17).
    timeout = settings.BROKER_TIMEOUT
    try:
        conn = Connection(  # type: ignore[no-untyped-call]
            settings.CELERY_BROKER_URL,
            connect_timeout=timeout,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        )
        with conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)  # type: ignore[no-untyped-call]
            # A round trip: a hung peer accepts the connection and never answers.
            conn.default_channel  # noqa: B018
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
        now=timezone.now(),
    )
    return render(request, "federation/csrf_failure.html", status=403)
