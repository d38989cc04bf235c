"""What the rate limits cost a request (issue 18 item 5), on the shared Redis.

Times GET /api/v1/entitlements through Django's test client (token lookup, entitlement
resolution, JSON) with the limits on (two budgets spent in Redis: the address and the token)
and, interleaved in the same run, with them off: the baseline. Also prints two floors measured
bare: what django-ratelimit did per request before issue 19 (``add`` + ``incr`` per budget, the
Redis cache's ``incr`` being two round trips itself), and one round trip (``PING``), which is
what the limiter now makes (one Lua script spends every budget).

    DATABASE_URL=postgres://... python bench/rate_limits.py [N] [REDIS_URL]

Target: the limits add under 1 ms at p50.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import timedelta

from benchdb import scratch_database

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REDIS_URL = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/15"
os.environ["RATE_LIMIT_CACHE_URL"] = REDIS_URL
os.environ["RATE_LIMIT_CACHE_PREFIX"] = f"bench{os.getpid()}"
# Budgets nobody reaches here: what is timed is spending them, not refusing.
os.environ["RATE_LIMIT_API_ADDRESS"] = "1000000/d"
os.environ["RATE_LIMIT_API_TOKEN"] = "1000000/d"  # noqa: S105 - a rate, not a secret
SCRATCH = scratch_database("bench/rate_limits.py", "bench_limits")
TARGET_MS = 1.0


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> None:
    SCRATCH.recreate()
    try:
        run()
    finally:
        SCRATCH.drop()


def run() -> None:
    import django

    django.setup()
    from django.core.cache import caches
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django.utils import timezone

    from federation.issuance.tokens import create_api_token
    from federation.models import IdentityProvider, User

    call_command("migrate", verbosity=0)
    idp = IdentityProvider.objects.create(slug="corp", protocol="saml", entity_id="https://x/")
    user = User.objects.create(
        username="alice", email="alice@corp.example", idp=idp, last_login=timezone.now()
    )
    token = create_api_token(
        user, name="bench", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")

    def once() -> float:
        start = time.perf_counter()
        answer = client.get("/api/v1/entitlements")
        elapsed = (time.perf_counter() - start) * 1000
        assert answer.status_code == 200, answer.content[:200]
        return elapsed

    cache = caches["ratelimit"]

    def floor_once(i: int) -> float:
        start = time.perf_counter()
        for budget in ("address", "token"):
            key = f"floor:{budget}:{i % 50}"
            if not cache.add(key, 1, 60):
                cache.incr(key)
        return (time.perf_counter() - start) * 1000

    client_redis = cache._cache.get_client(write=True)  # type: ignore[attr-defined]

    def one_trip_once() -> float:
        start = time.perf_counter()
        client_redis.ping()
        return (time.perf_counter() - start) * 1000

    for _ in range(50):  # warm-up: connections, the entitlement memo, Redis pool
        once()
    on: list[float] = []
    off: list[float] = []
    floor: list[float] = []
    one_trip: list[float] = []
    limits_off = override_settings(RATE_LIMITS_ENABLED=False)
    # Interleaved call by call, the order alternating, so that both see the same machine load
    # (the machine is shared: blocks of calls measured minutes apart did not).
    for i in range(N):
        if i % 2:
            on.append(once())
        with limits_off:
            off.append(once())
        if not i % 2:
            on.append(once())
        floor.append(floor_once(i))
        one_trip.append(one_trip_once())

    def line(name: str, samples: list[float]) -> str:
        return (
            f"{name:<34} p50 {statistics.median(samples):6.3f} ms  "
            f"p99 {percentile(samples, 99):6.3f} ms  (n={len(samples)})"
        )

    print("GET /api/v1/entitlements through the test client, Redis at", REDIS_URL)
    print(line("baseline: limits off", off))
    print(line("limits on (address + token)", on))
    print(line("floor: 2 x (add, incr) on Redis", floor))
    print(line("floor: one Redis round trip (PING)", one_trip))
    overhead = statistics.median(on) - statistics.median(off)
    verdict = "met" if overhead < TARGET_MS else "missed"
    print(
        f"overhead p50 {overhead:.3f} ms; floors p50 {statistics.median(floor):.3f} ms "
        f"(django-ratelimit's calls), {statistics.median(one_trip):.3f} ms (one round trip)"
    )
    print(f"target rate_limit_overhead_p50: {overhead:.3f} ms vs < {TARGET_MS} ms {verdict}")


if __name__ == "__main__":
    main()
