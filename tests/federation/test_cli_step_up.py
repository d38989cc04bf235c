"""``fedaccess`` against the portal over real HTTP: a role needing a fresh MFA sign-in prints
the URL to open, and the same command succeeds after it; ``fedaccess break-glass``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from access_requests.models import Grant
from federation import cli
from federation.models import Access
from tests.factories import GroupMappingFactory, LogicalRoleFactory, SignInFactory
from tests.federation import test_cli
from tests.issuance import World

pytestmark = pytest.mark.django_db

config_dir = test_cli.config_dir
logged_in = test_cli.logged_in


@pytest.fixture
def security(world: World, settings: SettingsWrapper, live_server: LiveServer) -> None:
    settings.BASE_URL = live_server.url
    role = LogicalRoleFactory(name="security", require_mfa=True, max_auth_age=timedelta(minutes=15))
    GroupMappingFactory(
        group="aws-pb-cloud-eng", role=role, business_unit=world.pb, environments=["prod"]
    )
    GroupMappingFactory(
        group="aws-pb-cloud-eng",
        role=world.admin,
        business_unit=world.pb,
        environments=["prod"],
        access=Access.BREAK_GLASS,
        max_grant=timedelta(hours=1),
    )


@pytest.mark.usefixtures("security", "logged_in")
def test_credentials_print_the_step_up_url_then_work_after_an_mfa_sign_in(
    world: World, live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    now = timezone.now()
    SignInFactory(user=world.alice, idp=world.idp, at=now, mfa=False, authenticated_at=now)
    args = ["credentials", "--account", "222222222222", "--role", "security"]

    assert cli.main(args) == 1
    printed = capsys.readouterr()
    assert printed.out == ""  # nothing botocore could mistake for credentials
    url = f"{live_server.url}/step-up/?account=222222222222&role=security&action=cli"
    assert "multi-factor authentication" in printed.err and url in printed.err

    SignInFactory(
        user=world.alice, idp=world.idp, at=timezone.now(), mfa=True, authenticated_at=now
    )
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["Version"] == 1


@pytest.mark.usefixtures("security", "logged_in")
def test_break_glass_from_the_command_line(
    world: World, capsys: pytest.CaptureFixture[str], config_dir: Path
) -> None:
    assert (
        cli.main(["break-glass", "--account", "222222222222", "--role", "admin", "--why", " "]) == 1
    )
    assert "justification" in capsys.readouterr().err

    args = ["break-glass", "--account", "222222222222", "--role", "admin", "--why", "INC-9"]
    assert cli.main([*args, "--minutes", "45"]) == 0
    grant = Grant.objects.get()
    assert grant.break_glass and grant.ends_at - grant.starts_at == timedelta(minutes=45)
    assert f"Break-glass #{grant.request_id}" in capsys.readouterr().out
