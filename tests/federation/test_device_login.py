"""``fedaccess login`` through the browser (issue 20): the CLI starts a login, the signed-in
person confirms the code on /device/, the CLI receives one token of that person, exactly once."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from federation import cli
from federation.device.service import decide_device_login, normalise_user_code
from federation.models import ApiToken, AuditEvent, DeviceLogin, User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def start(client: Client, body: Any = None) -> Any:
    return client.post(
        "/api/v1/device/start", json.dumps(body or {"client": "laptop"}), "application/json"
    )


def poll(client: Client, device_code: str) -> Any:
    return client.post(
        "/api/v1/device/token", json.dumps({"device_code": device_code}), "application/json"
    )


def signed_in(user: User) -> Client:
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    browser = Client(enforce_csrf_checks=False)
    browser.force_login(user)
    return browser


def test_the_cli_gets_one_token_of_the_person_who_approved() -> None:
    cli_side = Client()
    started = start(cli_side).json()
    assert started["verification_uri"].endswith("/device/")
    assert started["user_code"] in started["verification_uri_complete"]
    stored = DeviceLogin.objects.get()
    assert started["device_code"] not in json.dumps(
        list(DeviceLogin.objects.values()),  # only a digest of the device code is kept
        default=str,
    )
    assert stored.client == "laptop"

    waiting = poll(cli_side, started["device_code"])
    assert (waiting.status_code, waiting.json()["error"]) == (400, "authorization_pending")

    alice = UserFactory(email="alice@corp.example")
    browser = signed_in(alice)
    page = browser.get("/device/", {"code": started["user_code"].lower().replace("-", "")})
    assert "from laptop" in page.content.decode()
    assert "Approve only if you just ran" in page.content.decode()
    done = browser.post("/device/", {"code": started["user_code"], "action": "approve"})
    assert "Approved" in done.content.decode()

    issued = poll(cli_side, started["device_code"])
    assert issued.status_code == 200 and issued["Cache-Control"] == "no-store"
    token = issued.json()["token"]
    assert ApiToken.objects.get().user == alice
    api = cli_side.get("/api/v1/entitlements", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.status_code == 200
    again = poll(cli_side, started["device_code"])
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    events = list(AuditEvent.objects.values_list("event_type", flat=True))
    assert "device_login.approved" in events and "api_token.created" in events


def test_a_denied_or_expired_login_gets_no_token() -> None:
    cli_side = Client()
    denied = start(cli_side).json()
    signed_in(UserFactory()).post("/device/", {"code": denied["user_code"], "action": "deny"})
    refused = poll(cli_side, denied["device_code"])
    assert (refused.status_code, refused.json()["error"]) == (403, "access_denied")

    late = start(cli_side).json()
    DeviceLogin.objects.filter(user_code=late["user_code"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = poll(cli_side, late["device_code"])
    assert expired.json()["error"] == "expired_token"
    page = signed_in(UserFactory()).post(
        "/device/", {"code": late["user_code"], "action": "approve"}
    )
    assert page.status_code == 404
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.filter(event_type="device_login.refused").count() == 1


@pytest.mark.parametrize(
    ("path", "body", "fault"),
    [
        ("start", {"client": 7}, "client must be text"),
        ("start", {"client": "x" * 101}, "client must be text"),
        ("start", {"who": "me"}, "Unknown field 'who'"),
        ("start", [1], "JSON object"),
        ("token", {}, "device_code must be"),
        ("token", {"device_code": "x" * 101}, "device_code must be"),
        ("token", {"device_code": "guess"}, "Unknown or already used"),
    ],
)
def test_bad_bodies_are_4xx_json(path: str, body: Any, fault: str) -> None:
    response = Client().post(f"/api/v1/device/{path}", json.dumps(body), "application/json")
    assert 400 <= response.status_code < 500
    assert fault in response.json()["message"]


def test_wrong_methods_and_anonymous_pages() -> None:
    assert Client().get("/api/v1/device/start").json()["error"] == "method_not_allowed"
    assert Client().get("/device/").status_code == 302  # sign in first
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory())
    code = start(Client()).json()["user_code"]
    assert strict.post("/device/", {"code": code, "action": "approve"}).status_code == 403
    assert DeviceLogin.objects.get().state == "pending"


@pytest.mark.parametrize("typed", ["", "BCDF", "bcdf-ghjk-x", "ÄÄÄÄ-ÄÄÄÄ", "\x00" * 8])
def test_odd_codes_match_nothing(typed: str) -> None:
    page = signed_in(UserFactory()).get("/device/", {"code": typed})
    assert page.status_code in (200, 400, 404)
    assert normalise_user_code("bcdf ghjk") == "BCDF-GHJK"


def test_fedaccess_login_by_browser_stores_the_token_privately(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDACCESS_CONFIG_DIR", str(tmp_path / "fedaccess"))
    alice = UserFactory(email="alice@corp.example", last_login=timezone.now())
    out = io.StringIO()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["token"] = cli.browser_token(
                live_server.url, open_browser=False, out=out, sleep=lambda _: time.sleep(0.05)
            )
        except BaseException as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(200):  # the CLI's start lands in the database
        login = DeviceLogin.objects.filter(state="pending").first()
        if login is not None:
            break
        time.sleep(0.05)
    assert login is not None
    assert f"confirm the code {login.user_code}" in out.getvalue()
    decide_device_login(login.user_code, actor=alice, approve=True, now=timezone.now(), ip=None)
    thread.join(timeout=30)
    assert "error" not in result, result.get("error")
    assert ApiToken.objects.get().user == alice
    assert result["token"].startswith("fedat_")
