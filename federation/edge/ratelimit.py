"""Rate limits shared by every instance (issue 18 item 5), counted by django-ratelimit in the
``ratelimit`` cache (Redis in production: RATE_LIMIT_CACHE_URL), never in process memory there.

A request past a budget is answered 429 with ``Retry-After`` (the seconds left in the window),
as the common refusal page, or JSON under /api/. The first refusal of a key in a window is
audited (``rate_limit.exceeded``); later ones in the same window are not, so a flood cannot
flood the audit log. Budgets are checked widest key first and the first one exhausted answers,
so a refused call spends no narrower budget.

When the cache cannot be reached the limiter fails the way RATE_LIMIT_FAILURE says: ``open``
(the default: requests go through unlimited, a warning is logged) or ``closed`` (503
``rate_limit_unavailable``). Either way, for RATE_LIMIT_FAILURE_PAUSE_SECONDS after a failure
this process does not ask the cache again, so an outage costs one short timeout, not one per
request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from federation.audit.chain import record_refusal, request_ip
from federation.edge.limits import WHAT, Charge, KeyKind, charges_for, key_digest, limits_for
from federation.models import User
from federation.refusals import Refused, refusal_json, refusal_page

logger = logging.getLogger(__name__)

CACHE_ALIAS = "ratelimit"


class RateLimited(Refused):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class RateLimiterUnavailable(Refused):
    code = "rate_limit_unavailable"
    status = 503
    title = "Briefly unavailable"


class _CacheDown(Exception):
    pass


# Monotonic time until which this process leaves the cache alone after a failure.
_paused_until = 0.0


def reset_failure_pause() -> None:
    """Ask the cache again on the next request (tests, and after an operator fixed Redis)."""
    global _paused_until
    _paused_until = 0.0


def _spend(request: HttpRequest, charge: Charge) -> dict[str, Any] | None:
    try:
        usage: dict[str, Any] | None = get_usage(
            request,
            group=f"fedaccess.{charge.limit.value}",
            key=lambda _group, _request: charge.key,
            rate=charge.rate,
            increment=True,
        )
    except (RedisError, OSError) as error:
        raise _CacheDown(type(error).__name__) from error
    return usage


def _first_in_window(charge: Charge, seconds_left: int) -> bool:
    # The marker lives exactly as long as the window has left, so the next window's first
    # refusal is audited again; add() is atomic in Redis, so one instance wins it.
    marker = f"fedaccess.ratelimit.audited:{charge.limit.value}:{key_digest(charge.key)}"
    try:
        return bool(caches[CACHE_ALIAS].add(marker, 1, timeout=seconds_left))
    except (RedisError, OSError):
        return False


def _audit(request: HttpRequest, charge: Charge, refusal: Refused) -> None:
    user = request.user if isinstance(getattr(request, "user", None), User) else None
    actor = charge.actor or (user if user is not None and user.is_authenticated else None)
    with transaction.atomic():
        record_refusal(
            "rate_limit.exceeded",
            refusal,
            actor=actor,
            target=request.path[:500],
            ip=request_ip(request),
            now=timezone.now(),
            data={"limit": charge.limit.value, "key": charge.kind.value, "rate": charge.rate},
        )


def _answer(
    request: HttpRequest, refusal: Refused, retry_after: int, recorded: bool
) -> HttpResponse:
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = refusal_json(refusal)
    else:
        response = refusal_page(request, refusal, recorded=recorded)
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


def _whom(kind: KeyKind) -> str:
    return {
        KeyKind.ADDRESS: "your network address",
        KeyKind.TOKEN: "this API token",
        KeyKind.PERSON: "you",
    }[kind]


def check(request: HttpRequest, url_name: str) -> HttpResponse | None:
    """None when the request may go on; otherwise the 429 (or the fail-closed 503)."""
    global _paused_until
    if not settings.RATE_LIMITS_ENABLED:
        return None
    names = limits_for(url_name, request.path, request.method or "GET")
    if not names:
        return None
    pause = settings.RATE_LIMIT_FAILURE_PAUSE_SECONDS
    if time.monotonic() < _paused_until:
        return _unavailable(request, pause)
    try:
        for charge in charges_for(request, names):
            usage = _spend(request, charge)
            if usage is None or not usage["should_limit"]:
                continue
            retry_after = max(1, int(usage["time_left"]))
            refusal = RateLimited(
                f"Too many {WHAT[charge.limit]} from {_whom(charge.kind)}. "
                f"Try again in {retry_after} seconds.",
                detail={"retry_after": retry_after},
            )
            audited = _first_in_window(charge, retry_after)
            if audited:
                _audit(request, charge, refusal)
            return _answer(request, refusal, retry_after, audited)
    except _CacheDown as error:
        _paused_until = time.monotonic() + pause
        logger.warning(
            "rate limits: the cache did not answer (%s); failing %s for %ss",
            error,
            settings.RATE_LIMIT_FAILURE,
            pause,
        )
        return _unavailable(request, pause)
    return None


def _unavailable(request: HttpRequest, pause: float) -> HttpResponse | None:
    if settings.RATE_LIMIT_FAILURE == "open":
        return None
    refusal = RateLimiterUnavailable(
        "The service cannot check its rate limits right now. Try again in a few seconds."
    )
    return _answer(request, refusal, max(1, int(pause)), recorded=False)


class RateLimitMiddleware:
    """Last in MIDDLEWARE: its process_view runs once the route (and, for the portal, the
    signed-in person) is known, before the view does any work."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match
        return check(request, match.view_name if match is not None else "")
