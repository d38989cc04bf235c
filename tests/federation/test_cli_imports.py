"""``fedaccess credentials`` with a cached answer loads only what that answer needs (issue 19):
the AWS CLI starts it on every credentialed command, and the HTTP stack (urllib.request with
http.client, email and ssl) was most of its start. Counted from the imports the real console
script makes (PYTHONPROFILEIMPORTTIME), never from a clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from federation.cli import _cache_path
from federation.cli_portal import _write_private

URL = "http://127.0.0.1:9"  # the discard port: nothing answers there
TOKEN = "fa_test_" + "t" * 40
ACCOUNT, ROLE = "111111111111", "cloud-eng"
# What only the calls to the portal, the browser sign-in, the paste prompt or a config write need.
PORTAL_ONLY = {
    "urllib.request",
    "urllib.error",
    "http.client",
    "email",
    "ssl",
    "socket",
    "tempfile",
    "getpass",
    "webbrowser",
}


def run_credentials(config: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the installed console script as the AWS CLI would, and list what it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEDACCESS_", "DJANGO_"))}
    env.update({"FEDACCESS_CONFIG_DIR": str(config), "PYTHONPROFILEIMPORTTIME": "1"})
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("fedaccess")),
            "credentials",
            "--account",
            ACCOUNT,
            "--role",
            ROLE,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    return result, imported


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "fedaccess"
    monkeypatch.setenv("FEDACCESS_CONFIG_DIR", str(folder))
    _write_private(folder / "config.json", {"url": URL, "token": TOKEN})
    return folder


def test_a_cached_answer_loads_no_http_stack(config: Path) -> None:
    cached = {
        "Version": 1,
        "AccessKeyId": "ASIACACHED",
        "SecretAccessKey": "secret",
        "SessionToken": "session",
        "Expiration": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    _write_private(_cache_path(URL, TOKEN, ACCOUNT, ROLE, None), cached)

    result, imported = run_credentials(config)

    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == cached
    assert "federation.cli" in imported
    assert sorted(imported & PORTAL_ONLY) == []
    assert not {m for m in imported if m.split(".")[0] in {"django", "celery", "kombu", "boto3"}}


def test_without_a_cached_answer_the_portal_is_called_and_the_check_sees_it(
    config: Path,
) -> None:
    # No cache entry: the client calls the portal (nothing listens there), so the same count
    # that found nothing above finds the HTTP stack here.
    result, imported = run_credentials(config)

    assert result.returncode == 1
    assert "cannot reach the portal" in result.stderr
    assert result.stdout == ""
    assert {"urllib.request", "http.client"} <= imported


def test_an_expiring_cached_answer_is_not_served(config: Path) -> None:
    # Inside botocore's refresh window the cache is skipped, whatever the import savings.
    expiring = {
        "Version": 1,
        "AccessKeyId": "ASIAOLD",
        "SecretAccessKey": "secret",
        "SessionToken": "session",
        "Expiration": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
    }
    _write_private(_cache_path(URL, TOKEN, ACCOUNT, ROLE, None), expiring)

    result, imported = run_credentials(config)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "urllib.request" in imported
