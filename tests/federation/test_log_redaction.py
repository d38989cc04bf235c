"""No token, code or assertion reaches a log line (issue 12 item 10).

Real requests against the server runserver uses (Django's WSGIRequestHandler, whose access log
is the ``django.server`` logger) and through the Django test client, with the LOGGING of
settings.py: the output checked is what the configured handler writes.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import threading
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
from django.db import connections
from django.test import Client

from federation.log_redaction import REDACTED
from federation.observability.logging import JsonFormatter, PlainFormatter

TOKEN = "fedat_AbCdEf12_" + "s3cr3t-token-value-x" * 2
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9." + "c2lnbmF0dXJlLXNpZ25hdHVyZQ" * 3
CODE = "SplxlOBeZQQYbYS6WxSbIA-authorization-code"
STATE = "af0ifjsldkj-opaque-state-value"
SAML_BLOB = base64.b64encode(b'<?xml version="1.0"?><samlp:Response ID="_x">' + b"A" * 400).decode()


@pytest.fixture(params=["json", "plain"])
def log_output(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """What the configured handlers write, from every logger that has them, in each LOG_FORMAT
    (issue 18: the redaction holds for JSON lines too, and each of those lines parses)."""
    buffer = io.StringIO()
    handlers = {
        handler
        for name in ("", "django", "django.server", "django.request")
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and type(handler).__module__ == "logging"
    }
    assert handlers
    formatter = JsonFormatter() if request.param == "json" else PlainFormatter()
    previous = {handler: (handler.setStream(buffer), handler.formatter) for handler in handlers}
    for handler in handlers:
        handler.setFormatter(formatter)
    try:
        yield buffer
        if request.param == "json":
            for line in buffer.getvalue().splitlines():
                assert isinstance(json.loads(line), dict), line
    finally:
        for handler, (stream, old_formatter) in previous.items():
            handler.setStream(stream)
            handler.setFormatter(old_formatter)


@pytest.fixture
def runserver() -> Iterator[str]:
    """The WSGI server and request handler of ``manage.py runserver``, on loopback."""
    server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler, ipv6=False)
    server.set_app(WSGIHandler())

    def serve() -> None:
        try:
            server.serve_forever()
        finally:
            connections.close_all()  # this thread's own database connection

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _get(address: str, path: str, headers: dict[str, str] | None = None) -> int:
    connection = http.client.HTTPConnection(address, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _logged(address: str, output: io.StringIO) -> str:
    # The server handles one connection at a time and writes a request's access line after its
    # response: once one more request is answered, every earlier line is written.
    _get(address, "/healthz")
    return output.getvalue()


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, secret
        assert quote(secret, safe="") not in text, secret


@pytest.mark.django_db(transaction=True)
def test_access_log_keeps_no_token_code_or_assertion(
    runserver: str, log_output: io.StringIO
) -> None:
    assert _get(runserver, f"/api/v1/entitlements?token={TOKEN}") == 401
    # Any parameter name: a fedat_ value is a token.
    assert _get(runserver, f"/api/v1/entitlements?{urlencode({'t0k': TOKEN})}") == 401
    callback = urlencode({"code": CODE, "state": STATE, "iss": "https://idp.example"})
    assert _get(runserver, f"/oidc/nope/callback/?{callback}") == 404
    assert _get(runserver, f"/login/?{urlencode({'hint': JWT, 'blob': SAML_BLOB})}") == 200
    assert _get(runserver, f"/login/?{urlencode({'SAMLRequest': 'fZJBT', 'RelayState': STATE})}")

    logged = _logged(runserver, log_output)
    assert '"GET /api/v1/entitlements?token=' in logged and " 401 " in logged
    assert "/oidc/nope/callback/?code=" in logged and "iss=https" in logged
    assert logged.count(REDACTED) >= 7
    _assert_clean(logged, TOKEN, JWT, CODE, STATE, SAML_BLOB[:60], "fZJBT")


@pytest.mark.django_db(transaction=True)
def test_django_warnings_and_errors_are_redacted_whatever_the_field(
    runserver: str, log_output: io.StringIO
) -> None:
    # An attacker-chosen Host header is quoted by django.security.DisallowedHost (an ERROR).
    assert _get(runserver, "/login/", headers={"Host": TOKEN}) == 400
    logged = _logged(runserver, log_output)
    assert "DisallowedHost" in logged or "Invalid HTTP_HOST" in logged
    _assert_clean(logged, TOKEN)


@pytest.mark.django_db
def test_test_client_requests_log_no_secret(log_output: io.StringIO) -> None:
    client = Client()
    assert client.get("/api/v1/entitlements", {"token": TOKEN}).status_code == 401
    assert (
        client.get("/api/v1/entitlements", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 401
    )
    assert client.get("/oidc/nope/callback/", {"code": CODE, "state": STATE}).status_code == 404
    _assert_clean(log_output.getvalue(), TOKEN, CODE, STATE)


def test_exception_text_is_redacted(log_output: io.StringIO) -> None:
    try:
        raise ValueError(f"bad request body: token={TOKEN} id_token={JWT}")
    except ValueError:
        logging.getLogger("federation.anything").exception("handling %s", f"?code={CODE}")
    logged = log_output.getvalue()
    assert "ValueError: bad request body" in logged and "Traceback" in logged
    _assert_clean(logged, TOKEN, JWT, CODE)


def test_harmless_lines_are_left_alone(log_output: io.StringIO) -> None:
    line = "issuance.failed sts_code=AccessDenied error_code=x region=eu-west-1 sha=" + "a" * 64
    logging.getLogger("federation.anything").warning(line)
    assert line in log_output.getvalue()


def test_the_celery_worker_keeps_the_redacting_handlers() -> None:
    # By default a worker replaces the root logger's handlers with its own, unfiltered ones.
    from federation.celery import app

    assert app.conf.worker_hijack_root_logger is False
