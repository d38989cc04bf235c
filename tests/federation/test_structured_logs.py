"""Structured logs (issue 18 item 4): one JSON object per line with the request id the response
header shows, the person and the route; the request id taken from a proxy header only when a
setting trusts it; the same formatter for gunicorn's access lines; redaction of every field."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.audit.chain import record_event
from federation.issuance.tokens import create_api_token
from federation.models import AuditEvent
from federation.observability import context
from federation.observability.logging import JsonFormatter, PlainFormatter, gunicorn_logconfig
from tests.factories import UserFactory
from tests.saml_idp import SamlFlow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fedat_AbCdEf12_" + "s3cr3t-token-value-x" * 2
CODE = "SplxlOBeZQQYbYS6WxSbIA-authorization-code"


def console_handler() -> logging.StreamHandler[Any]:
    """The handler settings.LOGGING installs (root, django and django.server share it)."""
    (handler,) = {
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and type(h).__module__ == "logging"
    }
    return handler


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the app's console handler writes, in the JSON format whatever LOG_FORMAT says."""
    handler = console_handler()
    buffer = io.StringIO()
    stream, formatter = handler.setStream(buffer), handler.formatter
    handler.setFormatter(JsonFormatter())
    try:
        yield buffer
    finally:
        handler.setFormatter(formatter)
        handler.setStream(stream)


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one whole JSON object
    for record in parsed:
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "message", "request_id", "user", "route"} <= set(record)
        assert record["time"].endswith("Z")
    return parsed


def test_the_default_format_outside_debug_and_the_demo_is_json() -> None:
    from django.conf import settings

    assert settings.LOG_FORMAT == "json"
    assert isinstance(console_handler().formatter, JsonFormatter)


@pytest.mark.django_db
def test_a_json_line_carries_the_request_id_the_response_header_shows(
    json_lines: io.StringIO,
) -> None:
    answer = Client().get("/api/v1/entitlements", {"token": TOKEN})
    assert answer.status_code == 401
    request_id = answer["X-Request-ID"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0

    (line,) = [r for r in records(json_lines) if r["logger"] == "django.request"]
    assert line["request_id"] == request_id
    assert line["route"] == "api/v1/entitlements"
    assert line["level"] == "WARNING" and line["message"] == "Unauthorized: /api/v1/entitlements"
    assert line["status_code"] == 401
    assert TOKEN not in json_lines.getvalue()


@pytest.mark.django_db
def test_lines_name_the_signed_in_person_and_the_api_tokens_owner(
    json_lines: io.StringIO,
) -> None:
    user = UserFactory(email="rita@corp.example", last_login=timezone.now())
    client = Client()
    client.force_login(user)
    page = client.get("/requests/999999/")  # no such route
    decide = client.get("/approvals/999999/decide/")  # POST only
    token = create_api_token(
        user, name="cli", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    )
    api = Client().post(
        "/api/v1/credentials",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token.plaintext}",
    )
    assert (page.status_code, decide.status_code, api.status_code) == (404, 405, 400)

    lines = {r["request_id"]: r for r in records(json_lines) if r["logger"] == "django.request"}
    assert lines[page["X-Request-ID"]]["user"] == "rita@corp.example"
    assert lines[page["X-Request-ID"]]["route"] is None
    assert lines[decide["X-Request-ID"]]["user"] == "rita@corp.example"
    assert lines[decide["X-Request-ID"]]["route"] == "approvals/<int:request_id>/decide/"
    assert lines[api["X-Request-ID"]]["user"] == "rita@corp.example"
    assert lines[api["X-Request-ID"]]["route"] == "api/v1/credentials"
    assert token.plaintext not in json_lines.getvalue()


@pytest.mark.django_db
def test_a_client_cannot_choose_its_request_id_unless_a_proxy_header_is_trusted(
    settings: SettingsWrapper,
) -> None:
    chosen = "attacker-chosen-id"
    answer = Client().get("/healthz", HTTP_X_REQUEST_ID=chosen)
    assert answer["X-Request-ID"] != chosen

    settings.REQUEST_ID_HEADER = "X-Request-ID"
    assert Client().get("/healthz", HTTP_X_REQUEST_ID=chosen)["X-Request-ID"] == chosen
    trace = "Root=1-67891233-abcdef012345678912345678"
    assert Client().get("/healthz", HTTP_X_REQUEST_ID=trace)["X-Request-ID"] == trace
    # Values that could forge or break a log line or a header are replaced by a fresh id.
    for bad in ("a b", "x" * 201, '{"level":"ERROR"}', "id\u00e9", ""):
        got = Client().get("/healthz", HTTP_X_REQUEST_ID=bad)["X-Request-ID"]
        assert got != bad and len(got) == 32, bad


@pytest.mark.django_db
def test_every_response_carries_a_fresh_request_id() -> None:
    client = Client()
    ids = {client.get(path)["X-Request-ID"] for path in ("/healthz", "/login/", "/nowhere")}
    assert len(ids) == 3
    # After the response, the thread's log lines no longer carry the request's id.
    assert context.request_id.get() is None


def test_extra_fields_and_exceptions_are_redacted_in_json(json_lines: io.StringIO) -> None:
    log = logging.getLogger("federation.anything")
    log.warning(
        "callback %s",
        f"/cb?code={CODE}",
        extra={
            "token": TOKEN,
            "authorization": "Bearer abc.def",
            "detail": {"url": f"https://x.example/?code={CODE}", "ids": [TOKEN]},
            "reason": "saml.replay",
            "state": "pending",
            "attempts": 3,
        },
    )
    try:
        raise ValueError(f"bad body token={TOKEN}")
    except ValueError:
        log.exception("failed")
    warning, error = records(json_lines)
    assert warning["message"] == "callback /cb?code=<redacted>"
    assert warning["token"] == "<redacted>" and warning["authorization"] == "<redacted>"
    assert warning["detail"] == {
        "url": "https://x.example/?code=<redacted>",
        "ids": ["<redacted>"],
    }
    # Ordinary fields keep their values: only credentials are blanked.
    assert (warning["reason"], warning["state"], warning["attempts"]) == (
        "saml.replay",
        "pending",
        3,
    )
    assert "ValueError: bad body token=<redacted>" in error["exception"]
    assert TOKEN not in json_lines.getvalue() and CODE not in json_lines.getvalue()


def test_the_plain_format_carries_the_request_id() -> None:
    record = logging.LogRecord("federation.x", logging.INFO, __file__, 1, "hello", None, None)
    reset = context.request_id.set("rid-123")
    try:
        assert "INFO federation.x [rid-123] hello" in PlainFormatter().format(record)
    finally:
        context.request_id.reset(reset)
    assert "[-] hello" in PlainFormatter().format(record)


def _gunicorn_access_record(atoms: dict[str, Any]) -> logging.LogRecord:
    # gunicorn.glogging.Logger.access: access_log.info(access_log_format, safe_atoms)
    fmt = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    return logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, fmt, (atoms,), None)


def test_gunicorn_access_lines_become_json_with_the_request_id() -> None:
    atoms = {
        "h": "192.0.2.7",
        "l": "-",
        "u": "-",
        "t": "[29/Nov/2026:23:00:00 +0000]",
        "r": f"GET /oidc/corp/callback/?code={CODE}&state=xyz HTTP/1.1",
        "m": "GET",
        "U": "/oidc/corp/callback/",
        "q": f"code={CODE}&state=xyz",
        "H": "HTTP/1.1",
        "s": "302",
        "b": "0",
        "B": 0,
        "f": "-",
        "a": "curl/8",
        "D": 12500,
        "{x-request-id}o": "0123456789abcdef0123456789abcdef",
    }
    line = JsonFormatter().format(_gunicorn_access_record(atoms))
    record = json.loads(line)
    assert record["logger"] == "gunicorn.access"
    assert record["request_id"] == "0123456789abcdef0123456789abcdef"
    assert (record["method"], record["path"], record["status"]) == (
        "GET",
        "/oidc/corp/callback/",
        302,
    )
    assert record["duration_seconds"] == 0.0125
    assert record["query"] == "code=<redacted>&state=<redacted>"
    assert CODE not in line


def test_gunicorn_logconfig_is_a_working_logging_configuration(tmp_path: Path) -> None:
    # Applied in a process of its own: dictConfig replaces this process's handlers.
    script = (
        "import logging, logging.config, sys\n"
        "from federation.observability.logging import gunicorn_logconfig\n"
        "logging.config.dictConfig(gunicorn_logconfig())\n"
        "atoms = {'h': '127.0.0.1', 'm': 'GET', 'U': '/x', 'q': 'code=abc', 's': '200',"
        " 'r': 'GET /x?code=abc HTTP/1.1', '{x-request-id}o': 'rid-1'}\n"
        "logging.getLogger('gunicorn.access').info('%(h)s \"%(r)s\" %(s)s', atoms)\n"
        "logging.getLogger('gunicorn.error').info('Booting worker with pid: 7')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    access, error = (json.loads(line) for line in done.stderr.splitlines())
    assert access["request_id"] == "rid-1" and access["query"] == "code=<redacted>"
    assert access["message"] == '127.0.0.1 "GET /x?code=<redacted> HTTP/1.1" 200'
    assert error["logger"] == "gunicorn.error" and error["message"].startswith("Booting")

    env["LOG_FORMAT"] = "plain"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert 'INFO gunicorn.access [-] 127.0.0.1 "GET /x?code=<redacted> HTTP/1.1" 200' in (
        done.stderr
    )
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of json, plain"):
        gunicorn_logconfig("xml")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or plain"),
        ("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/metrics", "is not a directory"),
    ],
)
def test_bad_observability_settings_stop_the_start_with_a_clear_error(
    variable: str, value: str, message: str
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "federation.settings",
        "SECRET_KEY": "x" * 50,
        variable: value,
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr


@pytest.mark.django_db
def test_audit_events_name_the_request_they_were_written_in(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in()
    assert answer.status_code == 302
    event = AuditEvent.objects.get(event_type="signin.success")
    assert event.data["http_request_id"] == answer["X-Request-ID"]
    # Outside a request (a task, a command) there is none to name.
    outside = record_event("test.outside", actor="system", now=timezone.now())
    assert "http_request_id" not in outside.data
