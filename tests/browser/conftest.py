"""Browser journeys: Debian's Chromium driven by playwright against Django's live server, with
real SAML sign-in through an independent IdP (pysaml2) served over HTTP on loopback.

Each persona signs in in their own browser context (their own cookies), exactly as people on
separate machines would. Screenshots land in tests/artifacts/screenshots/.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from federation.models import IdentityProvider
from tests.aws import free_port
from tests.saml_idp import PysamlIdp, b64, cached_key_pair, register_signer

# playwright's sync API keeps an asyncio loop on the test thread; Django then refuses ORM calls
# from that thread. The test thread only sets up data, sequentially: allow it (tests only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "screenshots"
AXE_DIR = ROOT / "tests" / "browser" / "node_modules" / "axe-core"
CHROMIUM = "/usr/bin/chromium"
# The machine's network is closed: no background traffic, no component updates.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Person:
    subject: str
    email: str
    groups: tuple[str, ...]


@dataclass
class BrowserIdp:
    """A SAML IdP with a sign-in page: pick a person, press Continue, land on our ACS."""

    signer: PysamlIdp
    idp: IdentityProvider
    url: str
    people: dict[str, Person] = field(default_factory=dict)

    def add(self, name: str, email: str, groups: list[str]) -> Person:
        person = Person(subject=f"00u-{name}", email=email, groups=tuple(groups))
        self.people[name] = person
        return person


def _handler(state: BrowserIdp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _page(self, body: str) -> None:
            head = "<!doctype html><html lang='en'><head><title>Test IdP</title></head>"
            data = f"{head}<body>{body}</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(data.encode())

        def do_GET(self) -> None:
            # The AuthnRequest arrives by HTTP-Redirect; show who can sign in. A request with
            # ForceAuthn (a step-up) gets a password and a second factor, as a real IdP asks.
            location = state.url + self.path
            forced = state.signer.read_redirect(location).force_authn
            how = " with password and second factor" if forced else ""
            buttons = "".join(
                f"<button type='submit' name='person' value='{html.escape(name)}'>"
                f"Sign in as {html.escape(name)}{how}</button>"
                for name in state.people
            )
            self._page(
                f"<h1>Test IdP{' (MFA)' if forced else ''}</h1>"
                "<form method='post' action='/choose'>"
                f"<input type='hidden' name='location' value='{html.escape(location)}'>"
                f"{buttons}</form>"
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            seen = state.signer.read_redirect(form["location"][0])
            person = state.people[form["person"][0]]
            class_ref = (
                "http://schemas.microsoft.com/claims/multipleauthn"
                if seen.force_authn
                else "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
            )
            xml = state.signer.response_xml(
                seen,
                subject=person.subject,
                attributes={"email": [person.email], "groups": list(person.groups)},
                authn={"class_ref": class_ref, "authn_instant": int(time.time())},
            )
            self._page(
                f"<h1>Signed in as {html.escape(person.email)}</h1>"
                f"<form method='post' action='{html.escape(seen.acs_url)}'>"
                f"<input type='hidden' name='SAMLResponse' value='{b64(xml)}'>"
                f"<input type='hidden' name='RelayState' value='{html.escape(seen.relay_state)}'>"
                "<button type='submit'>Continue</button></form>"
            )

    return Handler


@pytest.fixture
def site(live_server: LiveServer, settings: SettingsWrapper) -> str:
    """The live server, with BASE_URL pointing at it (the ACS URL is built from BASE_URL)."""
    settings.BASE_URL = live_server.url
    settings.CSRF_TRUSTED_ORIGINS = [live_server.url]
    return str(live_server.url)


@pytest.fixture
def browser_idp(site: str, tmp_path: Path) -> Iterator[BrowserIdp]:
    port = free_port()
    # Same site as the portal (host name; the port does not count): on plain-http loopback the
    # SAML login-start cookie is SameSite=Lax, which a cross-site POST would not carry. Under
    # https it is SameSite=None; Secure and the IdP may be anywhere.
    url = f"http://{urlsplit(site).hostname}:{port}"
    key_pem, cert_pem = cached_key_pair("browser")
    signer = PysamlIdp(
        entity_id="https://corp.idp.test/saml",
        workdir=tmp_path / "browser-idp",
        key_pem=key_pem,
        cert_pem=cert_pem,
        sso_url=f"{url}/sso",
    )
    idp = register_signer("corp", signer)
    state = BrowserIdp(signer=signer, idp=idp, url=url)
    server = HTTPServer(("127.0.0.1", port), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/ensure-system-packages")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Any]:
    contexts: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Page, site: str, person: str) -> None:
    """SP-initiated SAML sign-in as ``person`` through the test IdP's pages."""
    page.goto(f"{site}/login/")
    page.get_by_role("link", name="Sign in with").first.click()
    page.get_by_role("button", name=f"Sign in as {person}").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{site}/**")


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def ensure_axe() -> Path:
    script = AXE_DIR / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is required to install axe-core for the accessibility checks")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR.parents[1])],
            check=True,
            timeout=300,
        )
    return script


def accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations on the current page (serious and critical ones)."""
    # Our CSP forbids inline script; evaluate axe's source in the page's main world instead.
    page.evaluate(ensure_axe().read_text())
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa']}})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def assert_accessible(page: Page) -> None:
    assert accessibility_violations(page) == []
