"""Personal API tokens and the /api/v1/ JSON API."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from federation.issuance.tokens import create_api_token, digest_of
from federation.models import ApiToken, AuditEvent, SessionIssuance
from tests.aws import MotoServer, caller_arn
from tests.issuance import World

pytestmark = pytest.mark.django_db


def _token(world: World, *, days: int = 30) -> str:
    return create_api_token(
        world.alice, name="laptop", lifetime=timedelta(days=days), now=timezone.now(), ip=None
    ).plaintext


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_token_page_shows_a_new_token_once_and_stores_only_its_hash(world: World) -> None:
    client = Client()
    client.force_login(world.alice)

    response = client.post("/tokens/", {"name": "laptop", "days": "30"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    match = re.search(r"fedat_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}", response.content.decode())
    assert match
    plaintext = match.group(0)
    stored = ApiToken.objects.get()
    assert stored.digest == digest_of(plaintext) and plaintext not in str(vars(stored))
    assert plaintext.startswith(stored.prefix)
    assert plaintext not in client.get("/tokens/").content.decode()
    event = AuditEvent.objects.get(event_type="api_token.created")
    assert plaintext not in str(event.data) and stored.prefix in event.target


@pytest.mark.parametrize("days", ["0", "91", "x"])
def test_token_lifetime_is_bounded(world: World, days: str) -> None:
    client = Client()
    client.force_login(world.alice)
    assert client.post("/tokens/", {"name": "laptop", "days": days}).status_code == 400
    assert not ApiToken.objects.exists()


def test_token_pages_send_no_referrer_elsewhere_yet_keep_their_forms_origin(world: World) -> None:
    # `no-referrer` on a page with forms makes Chromium post `Origin: null`, which the CSRF
    # check refuses; `same-origin` keeps the Origin and still sends no Referer off-site.
    client = Client()
    client.force_login(world.alice)
    listed = client.get("/tokens/")
    created = client.post("/tokens/", {"name": "laptop", "days": "30"})
    for response in (listed, created):
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cache-Control"] == "no-store"


def test_token_page_needs_csrf(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    assert client.post("/tokens/", {"name": "laptop", "days": "30"}).status_code == 403


def test_entitlements_lists_what_the_token_owner_may_use(world: World) -> None:
    response = Client().get("/api/v1/entitlements", **_bearer(_token(world)))
    assert response.status_code == 200
    items = {(e["account"], e["role"]): e for e in response.json()["entitlements"]}
    assert set(items) == {
        ("111111111111", "cloud-eng"),
        ("222222222222", "cloud-eng"),
        ("222222222222", "admin"),
    }
    assert items[("111111111111", "cloud-eng")]["region"] == "eu-west-1"
    assert items[("222222222222", "admin")]["usable"] is False
    # The JSON values are part of the API (the CLI and automation read them).
    assert items[("111111111111", "cloud-eng")]["access"] == "standing"
    assert items[("222222222222", "admin")]["access"] == "eligible"


def test_credentials_endpoint_issues_working_credentials(world: World, broker: MotoServer) -> None:
    token = _token(world)
    response = Client().post(
        "/api/v1/credentials",
        {"account": "111111111111", "role": "cloud-eng", "duration_seconds": 1800},
        content_type="application/json",
        **_bearer(token),
    )
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["Version"] == 1
    identity = {"Arn": caller_arn(broker.url, body)}
    assert identity["Arn"].endswith(":assumed-role/cloud-eng/alice@corp.example")
    row = SessionIssuance.objects.get()
    assert row.api_token is not None and row.duration == timedelta(minutes=30)
    assert AuditEvent.objects.get(event_type="issuance.issued").data["via"] == "api"


def test_credentials_endpoint_refuses_other_business_units(
    world: World, broker: MotoServer
) -> None:
    response = Client().post(
        "/api/v1/credentials",
        {"account": "333333333333", "role": "cloud-eng"},
        content_type="application/json",
        **_bearer(_token(world)),
    )
    assert response.status_code == 403
    assert response.json()["error"] == "not_entitled"
    assert AuditEvent.objects.get(event_type="issuance.refused").data["via"] == "api"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"account": "111111111111", "duration_seconds": "1h"}',
        b'{"account": "111111111111", "role": "cloud-eng", "duration_seconds": 1e400}',
        b'{"account": "111111111111", "role": "cloud-eng", "duration_seconds": 99999999999999}',
    ],
)
def test_malformed_api_bodies_are_400(world: World, body: bytes) -> None:
    response = Client().post(
        "/api/v1/credentials", body, content_type="application/json", **_bearer(_token(world))
    )
    assert response.status_code == 400


def test_api_ignores_the_session_cookie(world: World) -> None:
    client = Client()
    client.force_login(world.alice)
    response = client.get("/api/v1/entitlements")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer nope", "Basic abc", "Bearer fedat_x_y"])
def test_missing_or_unknown_tokens_are_401(world: World, header: str) -> None:
    response = Client().get("/api/v1/entitlements", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_expired_token_is_401(world: World) -> None:
    token = create_api_token(
        world.alice,
        name="old",
        lifetime=timedelta(days=1),
        now=timezone.now() - timedelta(days=1, seconds=1),
        ip=None,
    ).plaintext
    assert Client().get("/api/v1/entitlements", **_bearer(token)).status_code == 401


def test_revoked_token_stops_working(world: World) -> None:
    token = _token(world)
    client = Client()
    client.force_login(world.alice)
    assert Client().get("/api/v1/entitlements", **_bearer(token)).status_code == 200

    stored = ApiToken.objects.get()
    assert client.post(f"/tokens/{stored.pk}/revoke/").status_code == 302

    assert Client().get("/api/v1/entitlements", **_bearer(token)).status_code == 401
    assert AuditEvent.objects.filter(event_type="api_token.revoked").count() == 1


def test_a_token_revokes_itself_and_only_itself(world: World) -> None:
    mine, other = _token(world), _token(world)
    client = Client()
    assert client.get("/api/v1/token/revoke", **_bearer(mine)).status_code == 405

    response = client.post("/api/v1/token/revoke", **_bearer(mine))

    assert response.status_code == 200 and mine.startswith(response.json()["revoked"])
    assert client.get("/api/v1/entitlements", **_bearer(mine)).status_code == 401
    assert client.get("/api/v1/entitlements", **_bearer(other)).status_code == 200
    assert AuditEvent.objects.filter(event_type="api_token.revoked").count() == 1


def test_requests_are_filed_and_read_back_through_the_api(world: World) -> None:
    token, client = _token(world), Client()
    body = {"account": "222222222222", "role": "admin", "minutes": 60, "justification": "INC-1"}

    filed = client.post("/api/v1/requests", body, content_type="application/json", **_bearer(token))

    assert filed.status_code == 201 and filed.json()["state"] == "pending"
    shown = client.get(f"/api/v1/requests/{filed.json()['id']}", **_bearer(token))
    assert shown.status_code == 200 and shown.json() == filed.json()
    again = client.post("/api/v1/requests", body, content_type="application/json", **_bearer(token))
    assert again.status_code == 409 and again.json()["error"] == "duplicate_request"
    other = create_api_token(
        world.dora, name="d", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    hidden = client.get(f"/api/v1/requests/{filed.json()['id']}", **_bearer(other))
    assert hidden.status_code == 404
    bad = client.post(
        "/api/v1/requests",
        {**body, "minutes": "60"},
        content_type="application/json",
        **_bearer(token),
    )
    assert bad.status_code == 400


def test_nobody_revokes_someone_elses_token(world: World) -> None:
    _token(world)
    client = Client()
    client.force_login(world.dora)
    assert client.post(f"/tokens/{ApiToken.objects.get().pk}/revoke/").status_code == 404
    assert ApiToken.objects.get().revoked_at is None


def test_openapi_document_describes_the_api(client: Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/entitlements",
        "/credentials",
        "/console",
        "/requests",
        "/requests/{request_id}",
        "/break-glass",
        "/requests/{request_id}/cancel",
        "/approvals",
        "/approvals/{request_id}/decision",
        "/device/start",
        "/device/token",
        "/token/revoke",
    }
    post = document["paths"]["/credentials"]["post"]
    assert {"200", "401", "403", "503"} <= set(post["responses"])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    entitlement = document["components"]["schemas"]["Entitlements"]["properties"]["entitlements"]
    assert entitlement["items"]["properties"]["access"]["enum"] == [
        "standing",
        "grant",
        "eligible",
        "break_glass",
    ]


def test_token_of_someone_not_signed_in_lately_is_refused(world: World) -> None:
    token = _token(world)
    world.alice.last_login = timezone.now() - timedelta(hours=25)
    world.alice.save()
    response = Client().get("/api/v1/entitlements", **_bearer(token))
    assert response.status_code == 401
    assert "Sign in to the portal again" in response.json()["message"]
