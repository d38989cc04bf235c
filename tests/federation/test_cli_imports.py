"""``fedaccess credentials`` with a cached answer loads only what that answer needs (issue 19):
the AWS CLI starts it on every credentialed command, and the HTTP stack (urllib.request with
http.client, email and ssl) was most of its start, argparse and its parser a third of the rest.
Counted from the imports the real console script makes (PYTHONPROFILEIMPORTTIME), never from a
clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from federation.cli import _cache_path, _credentials_args, _parser, main
from federation.cli_portal import _write_private

URL = "http://127.0.0.1:9"  # the discard port: nothing answers there
TOKEN = "fa_test_" + "t" * 40
ACCOUNT, ROLE = "111111111111", "cloud-eng"
# What only the calls to the portal, the browser sign-in, the paste prompt, a config write or the
# other commands' parser need.
NOT_FOR_A_CACHED_ANSWER = {
    "argparse",
    "shutil",
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
    assert sorted(imported & NOT_FOR_A_CACHED_ANSWER) == []
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


# The credential_process line is read without argparse; whatever it reads, argparse reads alike,
# and whatever it cannot, it leaves to argparse (which names the fault).
ARGVS = [
    ["credentials", "--account", "111111111111", "--role", "cloud-eng"],
    ["credentials", "--role", "cloud-eng", "--account", "111111111111", "--no-cache"],
    ["credentials", "--account", "111111111111", "--role", "r", "--duration", "3600"],
    ["credentials", "--no-cache", "--duration", " 900 ", "--account", "", "--role", "r"],
]
LEFT_TO_ARGPARSE = [
    ["credentials", "--account=111111111111", "--role", "r"],
    ["credentials", "--acc", "111111111111", "--role", "r"],
    ["credentials", "--account", "1", "--role", "r", "--duration", "an hour"],
    ["credentials", "--account", "1", "--role", "r", "--duration", "-5"],
    ["credentials", "--account", "1", "--account", "2", "--role", "r"],
    ["credentials", "--account", "1", "--role", "r", "--no-cache", "--no-cache"],
    ["credentials", "--account", "1"],
    ["credentials", "--account", "--role", "r"],
    ["credentials", "--account", "1", "--role", "r", "extra"],
    ["credentials", "--account", "1", "--role"],
    ["credentials", "--help"],
    ["credentials"],
    ["status"],
    [],
]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_credential_process_line_reads_as_argparse_reads_it(argv: list[str]) -> None:
    fast = _credentials_args(list(argv))
    assert fast is not None
    assert vars(fast) == vars(_parser().parse_args(argv))


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=" ".join)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert _credentials_args(list(argv)) is None


@pytest.mark.parametrize(
    ("argv", "fault"),
    [
        (["credentials", "--account", "1", "--role", "r", "--duration", "an hour"], "invalid int"),
        (["credentials", "--account", "1"], "required: --role"),
        (["credentials", "--account", "1", "--role", "r", "extra"], "unrecognized arguments"),
    ],
)
def test_a_bad_credential_process_line_is_refused_by_name(
    argv: list[str], fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert fault in captured.err
    assert captured.out == ""
