"""Rate limits on the shared Redis (a key prefix of each test's own, never a flush: the Redis
is the machine's) and helpers to tune one limit for a test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.edge import ratelimit

# The Redis the suite already uses (the broker's, another database number is not needed:
# every key carries this run's prefix and expires with its window).
REDIS_URL = os.environ.get("TEST_REDIS_URL") or os.environ.get(
    "TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7"
)
if not REDIS_URL.startswith("redis://"):
    REDIS_URL = "redis://127.0.0.1:6379/7"


def redis_cache(prefix: str, url: str = REDIS_URL) -> dict[str, object]:
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": prefix,
        "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
    }


@pytest.fixture
def shared_limits(settings: SettingsWrapper) -> Iterator[Callable[..., None]]:
    """Limits counted in Redis, as in production; ``tune(signin="3/m")`` sets budgets."""
    settings.CACHES = {**settings.CACHES, "ratelimit": redis_cache(f"t{secrets.token_hex(6)}")}
    settings.RATE_LIMITS_ENABLED = True

    def tune(**rates: str) -> None:
        settings.RATE_LIMITS = {**settings.RATE_LIMITS, **rates}

    yield tune
    ratelimit.reset_failure_pause()
