"""Test set-up: PostgreSQL only, loopback network only, fresh entitlement memo per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings

from federation.audit import chain as audit
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
    yield
    entitlements.clear_cache()
    audit.forget_verification()


pytest_plugins = ["tests.aws", "tests.oidc_fixture", "tests.issuance", "tests.saml_idp"]
