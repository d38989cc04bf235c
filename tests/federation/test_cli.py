"""The fedaccess command line against the portal served over real HTTP, and moto behind it."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from federation import cli
from federation.issuance.tokens import create_api_token
from federation.models import SessionIssuance
from tests.aws import MotoServer, caller_arn
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

    [cache_file] = (logged_in / "cache").iterdir()
    assert _mode(cache_file) == 0o600
    near_expiry = datetime.now(UTC) + timedelta(minutes=14)
    cache_file.write_text(json.dumps({**first, "Expiration": near_expiry.isoformat()}))

    assert cli.main(args) == 0
    refreshed = json.loads(capsys.readouterr().out)
    assert refreshed["AccessKeyId"] != first["AccessKeyId"]
    assert SessionIssuance.objects.count() == 2


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


def test_config_prints_a_profile_per_entitlement(
    logged_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert "[profile pb-dev.cloud-eng]" in out
    assert (
        "credential_process = fedaccess credentials --account 111111111111 --role cloud-eng" in out
    )
    assert "region = eu-west-1" in out
    admin = out.index("[profile pb-prod.admin]")
    assert "# eligible only" in out[admin - 120 : admin]


def test_aws_sdk_gets_working_credentials_through_credential_process(
    logged_in: Path,
    broker: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["config"]) == 0
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(capsys.readouterr().out)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
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
