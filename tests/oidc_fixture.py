"""An independent OpenID Provider for the OIDC sign-in tests, and a token-endpoint stand-in.

``openid_provider`` runs panva/oidc-provider (OpenID Certified, pinned in
tests/oidc_provider/package-lock.json) on Node.js on a free loopback port for the whole test
session; ``npm ci`` installs it first when node_modules is missing. The tests generate its signing
key, so they can also mint tokens the provider would sign but that differ in one claim.

``token_stand_in`` is a tiny HTTP server that answers the token request with whatever ID token a
test put there, and serves a JWKS and a userinfo document it can change: the attacker (or the
compromised network) for forged-token cases. The happy path and the state/code attacks never use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin

import pytest
import requests
from django.conf import settings
from joserfc.jwk import RSAKey

from tests.aws import free_port

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "fedaccess-test"
CLIENT_SECRET = "test-client-secret-" + "x" * 20
# The IdP slugs whose callbacks are registered for the test client (one redirect URI per IdP).
REGISTERED_SLUGS = ("corp", "corp2")


def callback_for(slug: str) -> str:
    return f"{settings.BASE_URL}/oidc/{slug}/callback/"


@dataclass
class OpenIDProvider:
    issuer: str
    signing_key: RSAKey
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    @property
    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.as_dict(private=False)]}

    def sign_in(self, authorization_url: str, user: str, *, amr: str = "", acr: str = "") -> str:
        """Play the browser at the provider: log ``user`` in (``amr``: comma-separated RFC 8176
        methods, ``acr``: the class, as the provider reports them) and return the URL the
        provider redirects back to (the service's callback, with code, state and iss)."""
        browser = requests.Session()
        url = authorization_url
        for _ in range(10):
            response = browser.get(url, allow_redirects=False, timeout=10)
            if response.status_code == 200 and "/interaction/" in url:
                uid = url.rstrip("/").rsplit("/", 1)[-1]
                response = browser.post(
                    urljoin(self.issuer, f"/interaction/{uid}/login"),
                    data={
                        "login": user,
                        **({"amr": amr} if amr else {}),
                        **({"acr": acr} if acr else {}),
                    },
                    allow_redirects=False,
                    timeout=10,
                )
            assert response.status_code in (302, 303), (response.status_code, response.text)
            url = urljoin(url, response.headers["Location"])
            if url.startswith(settings.BASE_URL):
                return url
        raise AssertionError("the provider never redirected back to the service")


def _npm_ci() -> None:
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is required to install the test OpenID provider (tests/oidc_provider)")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(PROVIDER_DIR)],
        check=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIDProvider]:
    _npm_ci()
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required to run the test OpenID provider")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    key = RSAKey.generate_key(2048, parameters={"kid": "provider-1", "use": "sig"})
    jwks_file = tmp_path_factory.mktemp("oidc") / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    log_file = jwks_file.with_name("provider.log")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(port),
        "ISSUER": issuer,
        "JWKS_FILE": str(jwks_file),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": ",".join(callback_for(slug) for slug in REGISTERED_SLUGS),
    }
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [node, "server.js"], cwd=PROVIDER_DIR, env=env, stdout=log, stderr=log
        )
    try:
        _wait_ready(f"{issuer}/.well-known/openid-configuration", process, log_file)
        yield OpenIDProvider(issuer=issuer, signing_key=key)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the test OpenID provider exited:\n{log_file.read_text()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the test OpenID provider did not start:\n{log_file.read_text()}")


@dataclass
class TokenStandIn:
    """What the stand-in answers, and what it was asked."""

    url: str
    token_response: dict[str, Any] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    userinfo: dict[str, Any] = field(default_factory=dict)
    jwks_fetches: int = 0
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)

    def reset(self, jwks: dict[str, Any]) -> None:
        self.token_response = {}
        self.jwks = jwks
        self.userinfo = {}
        self.jwks_fetches = 0
        self.token_requests = []


@pytest.fixture(scope="session")
def token_stand_in() -> Iterator[TokenStandIn]:
    port = free_port()
    state = TokenStandIn(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/jwks":
                state.jwks_fetches += 1
                self._send(200, state.jwks)
            elif self.path == "/userinfo":
                self._send(200, state.userinfo)
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            state.token_requests.append(form)
            self._send(200, state.token_response)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
