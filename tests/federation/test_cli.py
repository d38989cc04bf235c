"""The fedaccess command line against the portal served over real HTTP, and moto behind it."""

from __future__ import annotations

import configparser
import io
import json
import os
import stat
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.session
import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from access_requests.models import AccessRequest
from federation import cli
from federation.cli_aws_config import BLOCK_BEGIN
from federation.issuance.tokens import create_api_token, revoke_api_token
from federation.models import ApiToken, SessionIssuance
from tests.aws import MotoServer, caller_arn
from tests.factories import GrantFactory
from tests.issuance import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fedaccess"
    monkeypatch.setenv("FEDACCESS_CONFIG_DIR", str(path))
    monkeypatch.delenv("FEDACCESS_URL", raising=False)
    monkeypatch.delenv("FEDACCESS_TOKEN", raising=False)
    return path


@pytest.fixture
def logged_in(
    world: World,
    broker: MotoServer,
    live_server: LiveServer,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    token = create_api_token(
        world.alice, name="cli", lifetime=timedelta(days=7), now=timezone.now(), ip=None
    ).plaintext
    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    assert cli.main(["login", "--url", live_server.url, "--token-stdin"]) == 0
    return config_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_stores_the_token_readable_by_its_owner_only(
    logged_in: Path, live_server: LiveServer
) -> None:
    stored = json.loads((logged_in / "config.json").read_text())
    assert stored["url"] == live_server.url and stored["token"].startswith("fedat_")
    assert _mode(logged_in / "config.json") == 0o600
    assert _mode(logged_in) == 0o700


def test_login_with_a_bad_token_fails_and_stores_nothing(
    world: World,
    live_server: LiveServer,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("fedat_bad_token\n"))
    assert cli.main(["login", "--url", live_server.url, "--token-stdin"]) == 1
    assert "401" in capsys.readouterr().err
    assert not (config_dir / "config.json").exists()


def test_login_refuses_plain_http_off_loopback(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["login", "--url", "http://portal.example.com", "--token-stdin"]) == 1
    assert "https://" in capsys.readouterr().err


def _cache_files(config: Path) -> list[Path]:
    return sorted((config / "cache").rglob("*.json"))


def _set_expiry(cache_file: Path, left: timedelta) -> None:
    entry = json.loads(cache_file.read_text())
    entry["Expiration"] = (datetime.now(UTC) + left).isoformat()
    cache_file.write_text(json.dumps(entry))


def test_credentials_print_credential_process_json_cached_until_near_expiry(
    logged_in: Path, broker: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["credentials", "--account", "111111111111", "--role", "cloud-eng"]
    assert cli.main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["Version"] == 1
    identity = {"Arn": caller_arn(broker.url, first)}
    assert identity["Arn"].endswith(":assumed-role/cloud-eng/alice@corp.example")

    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert SessionIssuance.objects.count() == 1  # served from the cache

    [cache_file] = _cache_files(logged_in)
    assert _mode(cache_file) == 0o600
    # A 15-minute session (STS's shortest) is reused while more than the margin is left...
    _set_expiry(cache_file, timedelta(minutes=14))
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["AccessKeyId"] == first["AccessKeyId"]
    # ...and never served inside botocore's mandatory-refresh window.
    _set_expiry(cache_file, timedelta(minutes=9))
    assert cli.main(args) == 0
    refreshed = json.loads(capsys.readouterr().out)
    assert refreshed["AccessKeyId"] != first["AccessKeyId"]
    assert SessionIssuance.objects.count() == 2


def test_cache_is_keyed_by_the_duration_asked_for(
    logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["credentials", "--account", "111111111111", "--role", "cloud-eng"]
    assert cli.main(args) == 0
    default = json.loads(capsys.readouterr().out)

    assert cli.main([*args, "--duration", "900"]) == 0
    captured = capsys.readouterr()
    short = json.loads(captured.out)
    assert short["AccessKeyId"] != default["AccessKeyId"]
    assert SessionIssuance.objects.order_by("-pk").first().duration == timedelta(minutes=15)
    assert "session lasts 15 min" in captured.err
    assert cli.main([*args, "--duration", "900"]) == 0  # the short session is reused too
    assert json.loads(capsys.readouterr().out) == short
    assert SessionIssuance.objects.count() == 2


def test_a_refused_token_empties_its_cache(
    world: World, logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["credentials", "--account", "111111111111", "--role", "cloud-eng"]
    assert cli.main(args) == 0 and cli.main([*args, "--duration", "1800"]) == 0
    capsys.readouterr()
    token = ApiToken.objects.get()
    revoke_api_token(world.alice, token_id=token.pk, now=timezone.now(), ip=None)
    # The 30-minute session's entry (the sooner to expire) is due for renewal; the other is fresh.
    short = min(_cache_files(logged_in), key=lambda f: json.loads(f.read_text())["Expiration"])
    _set_expiry(short, timedelta(minutes=5))

    assert cli.main([*args, "--duration", "1800"]) == 1
    assert "401" in capsys.readouterr().err
    # The still-fresh entry of the same token is gone with it: nothing cached is handed out.
    assert _cache_files(logged_in) == []
    assert cli.main(args) == 1 and cli.main([*args, "--duration", "1800"]) == 1


def test_a_refused_role_drops_its_cache_entry(
    world: World, logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["credentials", "--account", "111111111111", "--role", "cloud-eng"]
    assert cli.main(args) == 0
    [entry] = _cache_files(logged_in)
    _set_expiry(entry, timedelta(minutes=5))
    world.alice.directory_groups = ["aws-pb-admin"]
    world.alice.save()

    assert cli.main(args) == 1
    assert "403" in capsys.readouterr().err
    assert not entry.exists()


def test_credentials_refusal_is_an_error_on_stderr_and_nothing_on_stdout(
    logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["credentials", "--account", "333333333333", "--role", "cloud-eng"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "403" in captured.err and "not_entitled" in captured.err


def test_credentials_without_login_say_how_to_log_in(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["credentials", "--account", "111111111111", "--role", "x"]) == 1
    assert "fedaccess login" in capsys.readouterr().err


def test_console_prints_a_working_sign_in_link(
    logged_in: Path,
    live_server: LiveServer,
    settings: SettingsWrapper,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings.DEMO_MODE = True
    settings.ROOT_URLCONF = "tests.federation_stand_in_urls"
    settings.AWS_FEDERATION_URL = f"{live_server.url}/demo-federation/"

    args = ["console", "--account", "111111111111", "--role", "cloud-eng", "--print"]
    assert cli.main(args) == 0

    link = capsys.readouterr().out.strip()
    assert link.startswith(f"{live_server.url}/demo-federation/?Action=login")
    with urllib.request.urlopen(link) as landing:  # noqa: S310 - the live test server
        assert (
            "You would now be in account <strong>111111111111</strong>" in landing.read().decode()
        )
    assert SessionIssuance.objects.get().kind == "console"
    assert cli.main([*args[:-1], "--role", "admin", "--account", "222222222222", "--print"]) == 1
    assert "needs an approved request" in capsys.readouterr().err


def test_request_files_one_and_waits_for_the_decision(
    world: World, logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["request", "--account", "222222222222", "--role", "admin", "--minutes", "60"]
    assert cli.main([*args, "--why", "INC-9 failover", "--ticket", "INC-9"]) == 0
    assert "Request #" in capsys.readouterr().out
    filed = AccessRequest.objects.get()
    assert (filed.justification, filed.ticket, filed.duration_minutes) == (
        "INC-9 failover",
        "INC-9",
        60,
    )

    assert cli.main([*args, "--why", "again"]) == 1  # one pending request per target
    assert "409" in capsys.readouterr().err
    assert cli.main([*args[:-1], "15", "--why", "short"]) == 1
    assert "at least 30 minutes" in capsys.readouterr().err

    filed.delete()
    # --wait returns at once when the portal has decided; here nobody decides in 0 seconds.
    assert cli.main([*args, "--why", "INC-10", "--wait", "0"]) == 0
    assert "pending" in capsys.readouterr().out


def test_logout_revokes_the_token_and_forgets_it_and_its_cache(
    logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["credentials", "--account", "111111111111", "--role", "cloud-eng"]) == 0
    assert _cache_files(logged_in)

    assert cli.main(["logout"]) == 0

    assert "revoked at the portal" in capsys.readouterr().err
    assert ApiToken.objects.get().revoked_at is not None
    assert "token" not in json.loads((logged_in / "config.json").read_text())
    assert _cache_files(logged_in) == []
    assert cli.main(["credentials", "--account", "111111111111", "--role", "cloud-eng"]) == 1
    assert "fedaccess login" in capsys.readouterr().err


def test_status_shows_session_lengths_and_the_time_left_on_grants(
    world: World, logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = timezone.now()
    GrantFactory(
        request__requester=world.alice,
        request__account=world.pb_prod,
        request__role=world.admin,
        starts_at=now,
        ends_at=now + timedelta(hours=1, minutes=30, seconds=30),
    )
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert (
        "standing" in lines["pb-dev.cloud-eng"] and "up to 2 h 0 min" in lines["pb-dev.cloud-eng"]
    )
    assert "grant ends in 1 h 30 min" in lines["pb-prod.admin"]


UNRELATED = """[default]
region = us-east-1

[profile work]
role_arn = arn:aws:iam::999999999999:role/x
source_profile = default
"""


@pytest.fixture
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "aws" / "config"
    path.parent.mkdir()
    path.write_text(UNRELATED)
    path.chmod(0o640)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    return path


def test_config_prints_a_profile_per_usable_entitlement(
    logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "--print"]) == 0
    out = capsys.readouterr().out
    assert "[profile pb-dev.cloud-eng]" in out
    assert (
        "credential_process = fedaccess credentials --account 111111111111 --role cloud-eng" in out
    )
    assert "region = eu-west-1" in out
    # An eligible-only role would fail until approved: named in a comment, not a profile.
    assert "[profile pb-prod.admin]" not in out
    assert "# pb-prod.admin: eligible only; request access at" in out


def test_config_twice_keeps_one_block_and_every_line_outside_it(
    logged_in: Path, aws_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config"]) == 0
    once = aws_config.read_text()
    assert cli.main(["config"]) == 0
    twice = aws_config.read_text()

    assert twice == once and twice.startswith(UNRELATED)
    assert stat.S_IMODE(aws_config.stat().st_mode) == 0o640
    parser = configparser.ConfigParser()  # strict: a duplicate section would raise
    parser.read_string(twice)
    ours = ["pb-dev.cloud-eng", "pb-prod.cloud-eng"]
    assert parser.sections() == ["default", "profile work", *[f"profile {p}" for p in ours]]
    profiles = botocore.session.Session(profile="work").full_config["profiles"]
    assert set(profiles) == {"default", "work", *ours}

    # Lines added around the block later survive the next run byte for byte.
    aws_config.write_text("# mine\n" + twice + "\n[profile later]\nregion = eu-west-2\n")
    assert cli.main(["config"]) == 0
    assert aws_config.read_text() == "# mine\n" + twice + "\n[profile later]\nregion = eu-west-2\n"


def test_config_leaves_a_same_named_profile_outside_the_block_alone(
    logged_in: Path, aws_config: Path
) -> None:
    # What appending the old output by hand left behind.
    mine = "[profile pb-dev.cloud-eng]\nregion = ap-south-1\n"
    aws_config.write_text(UNRELATED + "\n" + mine)
    assert cli.main(["config"]) == 0
    text = aws_config.read_text()
    assert text.startswith(UNRELATED + "\n" + mine)
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert parser["profile pb-dev.cloud-eng"]["region"] == "ap-south-1"
    assert "exists outside this block; left alone" in text


def test_config_refuses_a_block_without_its_end(
    logged_in: Path, aws_config: Path, live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = UNRELATED + BLOCK_BEGIN.format(url=live_server.url) + "\n[profile x]\n"
    aws_config.write_text(broken)
    assert cli.main(["config"]) == 1
    assert "no end marker" in capsys.readouterr().err
    assert aws_config.read_text() == broken


def test_aws_sdk_gets_working_credentials_through_credential_process(
    logged_in: Path,
    broker: MotoServer,
    aws_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli.main(["config"]) == 0
    assert cli.main(["config"]) == 0
    # botocore runs `fedaccess` from PATH, as the AWS CLI would: the installed entry point.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    session = boto3.session.Session(profile_name="pb-dev.cloud-eng")
    identity = session.client("sts", endpoint_url=broker.url).get_caller_identity()

    assert identity["Arn"] == "arn:aws:sts::111111111111:assumed-role/cloud-eng/alice@corp.example"


@pytest.mark.django_db(False)
def test_cli_imports_only_the_standard_library() -> None:
    # The AWS CLI runs fedaccess on every credentialed command: it must not load Django or Celery.
    import subprocess

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import federation.cli"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    heavy = sorted(m for m in imported if m.split(".")[0] in {"django", "celery", "kombu", "boto3"})
    assert "federation.cli" in imported
    assert heavy == []
