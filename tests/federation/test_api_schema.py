"""schemathesis against the live server: the API keeps the promises of its OpenAPI document
(issue 12 §11). A real token, moto behind STS, every check schemathesis has."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from federation.issuance.tokens import create_api_token
from federation.models import AuditEvent
from tests.aws import MotoServer
from tests.issuance import World

pytestmark = pytest.mark.django_db

# Modest: the CI machine has two cores; a fixed seed makes a failure reproducible.
MAX_EXAMPLES = 25
SEED = 12


def test_the_api_keeps_its_openapi_document(
    world: World,
    broker: MotoServer,
    live_server: LiveServer,
    tmp_path: Path,
    settings: SettingsWrapper,
) -> None:
    # Console links go through the demo's federation endpoint on the live server, not AWS.
    settings.DEMO_MODE = True
    settings.ROOT_URLCONF = "tests.federation_stand_in_urls"
    settings.AWS_FEDERATION_URL = f"{live_server.url}/demo-federation/"
    # The fuzzer issues far past one person's budget on purpose; the limits have their own
    # tests (tests/edge/) and the document states their 429.
    settings.RATE_LIMITS_ENABLED = False
    token = create_api_token(
        world.alice, name="schemathesis", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{live_server.url}/api/v1/openapi.json",
            "--url",
            f"{live_server.url}/api/v1",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
            # It would revoke the token the run authenticates with.
            "--exclude-operation-id",
            "revokeThisToken",
            # A schema-valid request over the mapping's cap is refused 400 (duration_out_of_bounds),
            # which schemathesis counts as a failure; its HTTP tests are in test_api.py.
            "--exclude-operation-id",
            "fileRequest",
            # Likewise a schema-valid break-glass for a role without a break-glass row is
            # refused 403 (not_break_glass); its HTTP tests: tests/access_requests/.
            "--exclude-operation-id",
            "activateBreakGlass",
            # Polling with a schema-valid but unknown device code is refused 400 (invalid_grant),
            # as RFC 8628 says; its HTTP tests are in test_device_login.py.
            "--exclude-operation-id",
            "pollDeviceLogin",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # It really exercised the server: issuance was attempted, and refusals were audited.
    assert AuditEvent.objects.filter(event_type__startswith="issuance.").exists()
