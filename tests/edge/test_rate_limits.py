"""Rate limits (issue 18 item 5): a burst past each budget gets 429 with Retry-After, is audited
once per window, and leaves every other budget, person and address alone.

Budgets here are per day, so no window can roll over in the middle of a test's burst."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.edge.checks import rate_limits_are_shared
from federation.issuance.tokens import create_api_token
from federation.models import ApiToken, AuditEvent, User
from tests.aws import MotoServer, free_port
from tests.edge.conftest import redis_cache
from tests.issuance import World
from tests.saml_idp import SamlFlow

pytestmark = pytest.mark.django_db

Tune = Callable[..., None]


def _limited(response: object, *, json_body: bool = False) -> int:
    """The Retry-After of a 429 (asserting it is one)."""
    assert response.status_code == 429, response.content[:300]  # type: ignore[attr-defined]
    retry_after = int(response["Retry-After"])  # type: ignore[index]
    assert 1 <= retry_after <= 86400
    if json_body:
        assert response.json()["error"] == "rate_limited"  # type: ignore[attr-defined]
    else:
        assert b"Too many" in response.content  # type: ignore[attr-defined]
    return retry_after


def _events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="rate_limit.exceeded").order_by("pk"))


def _token(user: User) -> str:
    return create_api_token(
        user, name="laptop", lifetime=timedelta(days=30), now=timezone.now(), ip=None
    ).plaintext


def _bearer(token: str, ip: str = "127.0.0.1") -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": ip}


def test_signin_start_burst_is_refused_per_address_and_audited_once(
    saml_flow: SamlFlow, shared_limits: Tune
) -> None:
    shared_limits(signin="3/d")
    client = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(3):
        assert client.get("/saml/corp/login/").status_code == 302
    _limited(client.get("/saml/corp/login/"))
    _limited(client.get("/oidc/corp/login/"))  # one budget for both protocols' starts

    (event,) = _events()
    assert event.ip == "198.51.100.7" and event.target == "/saml/corp/login/"
    assert event.data["reason"] == "rate_limited"
    assert event.data["limit"] == "signin" and event.data["key"] == "address"
    # Another address has its own budget; the ACS (another limit) is untouched.
    assert Client(REMOTE_ADDR="198.51.100.8").get("/saml/corp/login/").status_code == 302
    seen = saml_flow.start(client=Client(REMOTE_ADDR="198.51.100.9"))
    assert saml_flow.post(b"<x/>", seen.relay_state, client=client).status_code in (400, 403)


def test_acs_burst_is_refused_before_any_validation(
    saml_flow: SamlFlow, shared_limits: Tune
) -> None:
    shared_limits(saml_acs="2/d")
    client = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(2):
        assert client.post("/saml/corp/acs/", {"SAMLResponse": "x"}).status_code == 400
    refused_before = AuditEvent.objects.filter(event_type="signin.refused").count()
    _limited(client.post("/saml/corp/acs/", {"SAMLResponse": "x"}))
    _limited(client.post("/saml/corp/acs/", {"SAMLResponse": "x"}))
    # The refused posts reached no validation (no new sign-in refusals), and one audit event.
    assert AuditEvent.objects.filter(event_type="signin.refused").count() == refused_before
    assert len(_events()) == 1
    # A real sign-in from elsewhere still works.
    signed_in = saml_flow.sign_in()
    assert signed_in.status_code == 302, signed_in.content[:300]


def test_oidc_callback_burst_is_refused_per_address(shared_limits: Tune) -> None:
    shared_limits(oidc_callback="2/d")
    client = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(2):
        assert client.get("/oidc/corp/callback/?code=x&state=y").status_code == 404
    _limited(client.get("/oidc/corp/callback/?code=x&state=y"))
    assert Client().get("/oidc/corp/callback/?code=x&state=y").status_code == 404
    (event,) = _events()
    assert event.data["limit"] == "oidc_callback"
    assert "code=" not in event.target  # the path only, never the query


def test_api_budget_is_per_token(world: World, shared_limits: Tune) -> None:
    shared_limits(api_token="3/d")
    first, second = _token(world.alice), _token(world.alice)
    client = Client()
    for _ in range(3):
        assert client.get("/api/v1/entitlements", **_bearer(first)).status_code == 200
    _limited(client.get("/api/v1/entitlements", **_bearer(first)), json_body=True)
    assert client.get("/api/v1/entitlements", **_bearer(second)).status_code == 200
    (event,) = _events()
    assert event.data["key"] == "token" and first not in json.dumps(event.data)


def test_api_budget_is_per_address_whatever_the_token(world: World, shared_limits: Tune) -> None:
    shared_limits(api_address="3/d")
    client = Client()
    for _ in range(3):
        client.get("/api/v1/entitlements", **_bearer("fedat_00000000_guessed", "198.51.100.7"))
    response = client.get("/api/v1/entitlements", **_bearer(_token(world.alice), "198.51.100.7"))
    _limited(response, json_body=True)
    assert client.get("/api/v1/nowhere", REMOTE_ADDR="198.51.100.7").status_code == 429
    token = _token(world.dora)
    assert client.get("/api/v1/entitlements", **_bearer(token, "198.51.100.8")).status_code == 200


def test_issuance_budget_is_per_person_across_portal_and_api(
    world: World, broker: MotoServer, shared_limits: Tune
) -> None:
    shared_limits(issuance="2/d")
    alice = Client()
    alice.force_login(world.alice)
    form = {"account": "111111111111", "role": "cloud-eng", "action": "cli"}
    for _ in range(2):
        answer = alice.post("/sessions/", form, HTTP_ACCEPT="application/json")
        assert answer.status_code == 200
    _limited(alice.post("/sessions/", form, HTTP_ACCEPT="application/json"))
    body = json.dumps({"account": "111111111111", "role": "cloud-eng"})
    api = Client().post(
        "/api/v1/credentials", body, content_type="application/json", **_bearer(_token(world.alice))
    )
    _limited(api, json_body=True)
    # A revoked token of hers spends nothing of her budget (nobody can lock her out with one).
    revoked = create_api_token(
        world.alice, name="old", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    )
    ApiToken.objects.filter(pk=revoked.token.pk).update(revoked_at=timezone.now())
    with_revoked = Client().post(
        "/api/v1/credentials", body, content_type="application/json", **_bearer(revoked.plaintext)
    )
    assert with_revoked.status_code == 401
    # The portal itself still answers her, and another person may issue.
    assert alice.get("/").status_code == 200
    dora = Client()
    dora.force_login(world.dora)
    dora_form = {"account": "333333333333", "role": "cloud-eng", "action": "cli"}
    assert dora.post("/sessions/", dora_form, HTTP_ACCEPT="application/json").status_code == 200
    (event,) = _events()
    assert event.actor == world.alice.username or event.actor_user_id == world.alice.pk
    assert event.data["limit"] == "issuance" and event.data["key"] == "person"


def test_request_budget_is_per_person(world: World, shared_limits: Tune) -> None:
    shared_limits(requests="2/d")
    client = Client()
    token = _token(world.alice)
    body = json.dumps(
        {"account": "222222222222", "role": "admin", "justification": "incident 42", "minutes": 60}
    )
    for _ in range(2):
        answer = client.post(
            "/api/v1/requests", body, content_type="application/json", **_bearer(token)
        )
        assert answer.status_code in (201, 400, 409), answer.content
    answer = client.post(
        "/api/v1/requests", body, content_type="application/json", **_bearer(token)
    )
    _limited(answer, json_body=True)
    # Reading one's requests is not filing: not limited.
    assert client.get("/api/v1/entitlements", **_bearer(token)).status_code == 200
    assert client.get("/api/v1/requests", **_bearer(token)).status_code == 200  # same path, GET


def test_limits_can_be_turned_off_one_by_one_or_all(
    saml_flow: SamlFlow, shared_limits: Tune, settings: SettingsWrapper
) -> None:
    shared_limits(signin="off", saml_acs="1/d")
    client = Client()
    for _ in range(5):
        assert client.get("/saml/corp/login/").status_code == 302
    client.post("/saml/corp/acs/", {"SAMLResponse": "x"})
    assert client.post("/saml/corp/acs/", {"SAMLResponse": "x"}).status_code == 429
    settings.RATE_LIMITS_ENABLED = False
    assert client.post("/saml/corp/acs/", {"SAMLResponse": "x"}).status_code == 400


def test_unreachable_cache_fails_open_by_default_and_says_so(
    saml_flow: SamlFlow,
    shared_limits: Tune,
    settings: SettingsWrapper,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared_limits(signin="1/d")
    port = free_port()  # nothing listens: connections are refused at once
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": redis_cache("down", f"redis://127.0.0.1:{port}/0"),
    }
    client = Client()
    with caplog.at_level(logging.WARNING, logger="federation.edge.ratelimit"):
        for _ in range(3):
            assert client.get("/saml/corp/login/").status_code == 302
    assert "failing open" in caplog.text
    assert not _events()


def test_unreachable_cache_can_fail_closed_with_a_503(
    saml_flow: SamlFlow, shared_limits: Tune, settings: SettingsWrapper
) -> None:
    port = free_port()  # nothing listens: connections are refused at once
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": redis_cache("down", f"redis://127.0.0.1:{port}/0"),
    }
    settings.RATE_LIMIT_FAILURE = "closed"
    api = Client().get("/api/v1/entitlements", HTTP_AUTHORIZATION="Bearer fedat_x")
    assert api.status_code == 503 and api.json()["error"] == "rate_limit_unavailable"
    page = Client().get("/saml/corp/login/")
    assert page.status_code == 503 and "Retry-After" in page
    # Routes without limits are not affected at all.
    assert Client().get("/healthz").status_code == 200


def test_deploy_check_warns_when_limits_are_counted_per_process(settings: SettingsWrapper) -> None:
    settings.RATE_LIMITS_ENABLED = True
    settings.RATE_LIMIT_CACHE_URL = ""
    assert [message.id for message in rate_limits_are_shared()] == ["fedaccess.W001"]
    settings.RATE_LIMIT_CACHE_URL = "redis://127.0.0.1:6379/0"
    assert rate_limits_are_shared() == []
    settings.RATE_LIMIT_CACHE_URL = ""
    settings.RATE_LIMITS_ENABLED = False
    assert rate_limits_are_shared() == []


def test_every_budget_of_a_request_is_spent_in_one_redis_round_trip(
    world: World, shared_limits: Tune, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    shared_limits(api_address="3/d", api_token="2/d")
    calls: list[str] = []
    execute = redis.Redis.execute_command

    def counted(self: redis.Redis, *args: object, **options: object) -> object:
        calls.append(str(args[0]))
        return execute(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    token, client = _token(world.alice), Client()

    assert client.get("/api/v1/entitlements", **_bearer(token)).status_code == 200
    assert calls == ["EVALSHA"] or calls == ["EVALSHA", "EVAL"]  # EVAL: the script not loaded yet
    calls.clear()
    assert client.get("/api/v1/entitlements", **_bearer(token)).status_code == 200
    assert calls == ["EVALSHA"]
    # The token budget (2) is exhausted by the third call; the refusal's audit marker is the
    # one more round trip a refused request makes.
    calls.clear()
    _limited(client.get("/api/v1/entitlements", **_bearer(token)), json_body=True)
    assert calls[0] == "EVALSHA" and len(calls) == 2
    # The wider address budget (3) was spent by the refused call too, the narrower one was not
    # spent past it: a call from another token at this address is the address's fourth.
    _limited(client.get("/api/v1/entitlements", **_bearer(_token(world.dora))), json_body=True)
