"""Rate limits shared by every instance (issue 18 item 5), counted in the ``ratelimit`` cache
(Redis in production: RATE_LIMIT_CACHE_URL), never in process memory there.

On Redis every budget of a request is spent in one round trip: one Lua script increments each
budget's counter in order, widest first, and stops at the first one exhausted (issue 19: the
django-ratelimit calls took three round trips per budget). The windows and rates are
django-ratelimit's (fixed windows, ``30/m`` syntax, a per-key jitter of the window's end); on any
other cache (the per-process cache of the demo) django-ratelimit still counts.

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

import hashlib
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_ratelimit.core import _split_rate, get_usage
from redis.exceptions import NoScriptError, RedisError

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
    """django-ratelimit's count, for caches other than Redis (three calls per budget)."""
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


# KEYS: one counter per budget, in the order they are checked; ARGV: each budget's allowance and
# the counter's lifetime in seconds, in pairs. Increments each counter (setting its lifetime when
# the increment created it) until one goes past its allowance; returns that budget's 1-based
# index and count, or 0 when every budget had room. A refused call so spends no narrower budget.
_SPEND_SCRIPT = """
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, ARGV[2 * i]) end
  if count > tonumber(ARGV[2 * i - 1]) then return {i, count} end
end
return {0, 0}
"""
_SPEND_SHA = hashlib.sha1(_SPEND_SCRIPT.encode(), usedforsecurity=False).hexdigest()
# As django-ratelimit: a counter outlives its window by this much, never less than the window.
_EXPIRATION_FUDGE = 5


def _window_end(value: str, period: int, now: int) -> int:
    """django-ratelimit's window: fixed periods from the epoch, their end shifted by a per-key
    jitter so that not every budget renews at the same second."""
    if period == 1:
        return now
    end = now - (now % period) + (zlib.crc32(value.encode()) % period)
    return end + period if end < now else end


def _counter_key(charge: Charge, window: int) -> str:
    # The key itself may name a token digest or an address: only its hash reaches Redis.
    digest = hashlib.sha256(f"{charge.limit.value}\0{charge.rate}\0{charge.key}".encode())
    return f"rl:{charge.limit.value}:{digest.hexdigest()[:40]}:{window}"


def _spend_all(cache: RedisCache, charges: list[Charge]) -> tuple[Charge, int] | None:
    """Spend every budget in one Redis round trip; the first exhausted one and the seconds left
    in its window, or None when all had room."""
    now = int(time.time())
    keys: list[str] = []
    args: list[int] = []
    windows: list[int] = []
    for charge in charges:
        limit, period = _split_rate(charge.rate)
        window = _window_end(charge.key, period, now)
        keys.append(cache.make_and_validate_key(_counter_key(charge, window)))
        args += [limit, period + _EXPIRATION_FUDGE]
        windows.append(window)
    try:
        client = cache._cache.get_client(write=True)
        try:
            index, _count = client.evalsha(_SPEND_SHA, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or flushed Redis: load it again with the call
            index, _count = client.eval(_SPEND_SCRIPT, len(keys), *keys, *args)
    except (RedisError, OSError) as error:
        raise _CacheDown(type(error).__name__) from error
    if not index:
        return None
    return charges[index - 1], windows[index - 1] - now


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
        exhausted = _exhausted(request, charges_for(request, names))
        if exhausted is not None:
            charge, time_left = exhausted
            retry_after = max(1, time_left)
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


def _exhausted(request: HttpRequest, charges: list[Charge]) -> tuple[Charge, int] | None:
    """Spend ``charges`` in order; the first one exhausted and the seconds left in its window."""
    if not charges:
        return None
    cache = caches[CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        return _spend_all(cache, charges)
    for charge in charges:
        usage = _spend(request, charge)
        if usage is not None and usage["should_limit"]:
            return charge, int(usage["time_left"])
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
