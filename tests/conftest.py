"""Test set-up: PostgreSQL only, loopback network only, fresh entitlement memo per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

from federation.audit import chain as audit
from federation.edge import ratelimit
from federation.entitlements import resolve as entitlements


def pytest_configure(config: pytest.Config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine and not os.environ.get("ALLOW_NON_POSTGRES_TESTS"):
        raise pytest.UsageError(
            "Tests run against PostgreSQL: set DATABASE_URL=postgres://... "
            f"(got engine {engine}). `make test` does this for you."
        )


@pytest.fixture(autouse=True)
def _fresh_entitlement_memo() -> Iterator[None]:
    entitlements.clear_cache()
    audit.forget_verification()
    # Rate limits count per test (in process memory unless a test points them at Redis).
    # Never clear() a Redis cache: that flushes the whole database, which others share.
    limits = caches[ratelimit.CACHE_ALIAS]
    if isinstance(limits, LocMemCache):
        limits.clear()
    ratelimit.reset_failure_pause()
    yield
    entitlements.clear_cache()
    audit.forget_verification()


pytest_plugins = ["tests.aws", "tests.oidc_fixture", "tests.issuance", "tests.saml_idp"]
