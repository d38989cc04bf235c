"""The service started the documented way (scripts/serve: gunicorn, Celery worker and beat) as
real processes on loopback, and a client that stands in for the trusted TLS proxy in front.

Every process is started in a session of its own and killed with its whole group in the
fixtures' finalizers, whatever the test did; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from tests.access_requests.live import wait_for
from tests.saml_idp import PysamlIdp, b64

ROOT = Path(__file__).resolve().parents[2]
HOST = "fed.test"
BASE_URL = f"https://{HOST}"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Served:
    """One process started by ``scripts/serve ROLE``."""

    role: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the process itself (gunicorn's master: a graceful stop)."""
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """The whole process group, at once (finalizers)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def start(role: str, env: dict[str, str], workdir: Path, *args: str, port: int = 0) -> Served:
    log = workdir / f"{role}-{port or secrets.token_hex(3)}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), role, *args],
            cwd=ROOT,
            env={**env, "WEB_BIND": f"127.0.0.1:{port}"} if port else env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Served(role, process, log, port)


def wait_started(served: Served, marker: str = "", *, timeout: float = 90) -> None:
    """Until the web process answers /healthz (or the log shows ``marker``); a process that
    exits first fails the wait with its log."""

    def ready() -> bool:
        if served.process.poll() is not None:
            raise AssertionError(f"{served.role} exited:\n{served.output()[-3000:]}")
        if marker:
            return marker in served.output()
        try:
            return ProxiedClient(served.port).get("/healthz").status == 200
        except OSError:
            return False

    wait_for(ready, timeout=timeout, what=f"{served.role} to start")


def service_env(**extra: str) -> dict[str, str]:
    """The production environment: no DEBUG, no demo, https BASE_URL behind one trusted proxy."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "DEMO_MODE", "DJANGO_SETTINGS_MODULE", "PYTEST_CURRENT_TEST"}
    }
    env.update(
        {
            "PYTHON": sys.executable,
            "BASE_URL": BASE_URL,
            "TRUSTED_PROXY_COUNT": "1",
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "2",
            "LOG_LEVEL": "INFO",
            "STS_BROKER_CHAINED": "false",
            **extra,
        }
    )
    return env


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def header(self, name: str) -> str:
        return str(self.headers.get(name, ""))

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def csrf(self) -> str:
        match = _CSRF.search(self.text)
        assert match, f"no CSRF token in the page ({self.status})"
        return match.group(1)


@dataclass
class ProxiedClient:
    """A browser behind the trusted TLS proxy: the proxy sets ``X-Forwarded-Proto: https`` and
    appends the browser's address to ``X-Forwarded-For``; the Host is the public one. Cookies
    are kept as a browser on https keeps them (Secure, ``__Host-`` ones included)."""

    port: int
    address: str = "203.0.113.10"
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
        timeout: float = 60,
    ) -> Answer:
        sent = {
            "Host": HOST,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": self.address,
            **(headers or {}),
        }
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent.setdefault("Origin", BASE_URL)
        connection = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        for value in answer.headers.get_all("Set-Cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(value)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return answer

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict[str, str], **kwargs: Any) -> Answer:
        return self.request("POST", path, form=form, **kwargs)


@dataclass(frozen=True)
class Started:
    """A sign-in begun at /saml/<slug>/login/: the IdP's view of the request, and the browser's
    login-start cookie (so a test can post the answer from another browser or instance)."""

    relay_state: str
    response: str
    cookies: dict[str, str]


def saml_start(
    client: ProxiedClient, signer: PysamlIdp, *, subject: str, email: str, groups: list[str]
) -> Started:
    started = client.get("/saml/corp/login/")
    assert started.status == 302, started.text[:300]
    seen = signer.read_redirect(started.header("Location"))
    xml = signer.response_xml(
        seen, subject=subject, attributes={"email": [email], "groups": groups}
    )
    return Started(seen.relay_state, b64(xml), dict(client.cookies))


def saml_finish(client: ProxiedClient, started: Started, *, port: int | None = None) -> Answer:
    # The IdP's page posts cross-site: the ACS is the one CSRF-exempt endpoint.
    return client.post(
        "/saml/corp/acs/",
        {"SAMLResponse": started.response, "RelayState": started.relay_state},
        headers={"Origin": "https://corp.idp.test"},
        port=port,
    )


class StsGate:
    """A regional STS endpoint in front of the moto server that can hold calls: ``hold()``
    makes the next call wait (``arrived`` is set when it does) until ``release()``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.opened = threading.Event()
        self.opened.set()
        self.arrived = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gate.arrived.set()
                gate.opened.wait(timeout=120)
                forwarded = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in {"host", "content-length"}
                }
                answer = requests.post(
                    gate.upstream + self.path, data=body, headers=forwarded, timeout=30
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "text/xml"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        self.arrived.clear()
        self.opened.clear()

    def release(self) -> None:
        self.opened.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
