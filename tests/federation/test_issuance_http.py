"""The portal's issuance actions over HTTP: console links, CLI credentials, refusals, secrets."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from pytest_django.live_server_helper import LiveServer

from federation.issuance.service import issue_session
from federation.log_redaction import RedactCredentials, redact
from federation.models import AuditEvent, SessionIssuance
from tests.aws import MotoServer, caller_arn
from tests.factories import GrantFactory
from tests.issuance import World, closed_port_url

pytestmark = pytest.mark.django_db


def _post(client: Client, account: str, role: str, action: str, **extra: str) -> object:
    return client.post("/sessions/", {"account": account, "role": role, "action": action, **extra})


@pytest.fixture
def federation_stand_in(live_server: LiveServer, settings: SettingsWrapper) -> str:
    """The demo federation endpoint, served over real HTTP by the live server."""
    settings.DEMO_MODE = True
    settings.ROOT_URLCONF = "tests.federation_stand_in_urls"
    settings.AWS_FEDERATION_URL = f"{live_server.url}/demo-federation/"
    return settings.AWS_FEDERATION_URL  # type: ignore[no-any-return]


def test_console_action_redirects_through_the_federation_endpoint(
    world: World, broker: MotoServer, federation_stand_in: str, settings: SettingsWrapper
) -> None:
    client = Client()
    client.force_login(world.alice)

    response = _post(client, "111111111111", "cloud-eng", "console")

    assert response.status_code == 302  # type: ignore[attr-defined]
    location = response["Location"]  # type: ignore[index]
    assert location.startswith(federation_stand_in)
    query = parse_qs(urlsplit(location).query)
    assert query["Action"] == ["login"]
    assert query["Issuer"] == [settings.BASE_URL]
    assert query["Destination"] == [
        "https://eu-west-1.console.aws.amazon.com/console/home?region=eu-west-1"
    ]
    assert response["Cache-Control"] == "no-store"  # type: ignore[index]
    assert response["Referrer-Policy"] == "no-referrer"  # type: ignore[index]

    landing = client.get(location.removeprefix(federation_stand_in.split("/demo-")[0]))
    body = landing.content.decode()
    assert landing.status_code == 200
    assert "You would now be in account <strong>111111111111</strong>" in body
    assert "as role <strong>cloud-eng</strong>" in body
    assert "alice@corp.example" in body
    # The sign-in token is single use, like AWS's.
    again = client.get(location.removeprefix(federation_stand_in.split("/demo-")[0]))
    assert again.status_code == 400
    assert SessionIssuance.objects.get().kind == "console"


def test_console_link_failure_is_a_clear_502_and_audited(
    world: World, broker: MotoServer, settings: SettingsWrapper
) -> None:
    settings.AWS_FEDERATION_URL = f"{closed_port_url()}/federation"
    client = Client()
    client.force_login(world.alice)

    response = _post(client, "111111111111", "cloud-eng", "console")

    assert response.status_code == 502  # type: ignore[attr-defined]
    assert "console sign-in link failed" in response.content.decode()  # type: ignore[attr-defined]
    # The session was minted (CloudTrail shows it), so its record stays, next to the failure.
    assert SessionIssuance.objects.count() == 1
    failed = AuditEvent.objects.get(event_type="issuance.failed")
    assert failed.data["reason"] == "console_link_failed"
    assert AuditEvent.objects.filter(event_type="issuance.issued").count() == 1


def test_cli_action_answers_credential_process_json_when_asked(
    world: World, broker: MotoServer
) -> None:
    client = Client()
    client.force_login(world.alice)

    response = client.post(
        "/sessions/",
        {"account": "111111111111", "role": "cloud-eng", "action": "cli", "duration_minutes": "30"},
        HTTP_ACCEPT="application/json",
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert body["Version"] == 1 and body["Expiration"].endswith("Z")
    identity = {"Arn": caller_arn(broker.url, body)}
    assert identity["Arn"] == "arn:aws:sts::111111111111:assumed-role/cloud-eng/alice@corp.example"
    assert SessionIssuance.objects.get().duration == timedelta(minutes=30)


def test_cli_action_from_the_browser_shows_a_page_that_is_not_cached(
    world: World, broker: MotoServer
) -> None:
    client = Client()
    client.force_login(world.alice)
    response = _post(client, "111111111111", "cloud-eng", "cli")
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert "export AWS_SESSION_TOKEN=" in response.content.decode()  # type: ignore[attr-defined]
    assert "lasts\n  2 h: valid until" in response.content.decode()  # type: ignore[attr-defined]
    assert response["Cache-Control"] == "no-store"  # type: ignore[index]


def test_post_without_csrf_token_is_refused(world: World, broker: MotoServer) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    response = _post(client, "111111111111", "cloud-eng", "cli")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert not SessionIssuance.objects.exists()
    # With the token from the portal form, the same POST works: CSRF was the reason.
    portal = client.get("/")
    token = portal.context["csrf_token"]
    ok = _post(client, "111111111111", "cloud-eng", "cli", csrfmiddlewaretoken=str(token))
    assert ok.status_code == 200  # type: ignore[attr-defined]


def test_issuance_is_post_only_and_needs_sign_in(world: World) -> None:
    assert Client().post("/sessions/", {})["Location"].startswith("/login/")
    client = Client()
    client.force_login(world.alice)
    assert client.get("/sessions/").status_code == 405


def test_pb_user_posting_a_dw_account_gets_403_and_an_audit_event(
    world: World, broker: MotoServer
) -> None:
    broker.start_recording()
    client = Client()
    client.force_login(world.alice)

    response = _post(client, "333333333333", "cloud-eng", "console")

    assert response.status_code == 403  # type: ignore[attr-defined]
    assert "not entitled" in response.content.decode()  # type: ignore[attr-defined]
    event = AuditEvent.objects.get(event_type="issuance.refused")
    assert (event.actor, event.account_id, event.data["reason"]) == (
        "alice@corp.example",
        "333333333333",
        "not_entitled",
    )
    assert broker.received("AssumeRole") == []


def test_role_not_in_entitlements_is_403(world: World, broker: MotoServer) -> None:
    client = Client()
    client.force_login(world.alice)
    response = _post(client, "111111111111", "admin", "cli")
    assert response.status_code == 403  # type: ignore[attr-defined]


def test_eligible_without_grant_is_403_as_json(world: World, broker: MotoServer) -> None:
    client = Client()
    client.force_login(world.alice)
    response = client.post(
        "/sessions/",
        {"account": "222222222222", "role": "admin", "action": "cli"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"] == "grant_required"


def test_role_arn_in_the_form_is_ignored(world: World, broker: MotoServer) -> None:
    broker.start_recording()
    client = Client()
    client.force_login(world.alice)
    response = _post(
        client,
        "111111111111",
        "cloud-eng",
        "cli",
        role_arn="arn:aws:iam::999999999999:role/evil",
        grant_id="1",
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert broker.received("AssumeRole")[0]["RoleArn"] == (
        "arn:aws:iam::111111111111:role/cloud-eng"
    )


def test_sts_down_everywhere_is_a_clear_503_page(
    world: World, broker: MotoServer, settings: SettingsWrapper
) -> None:
    settings.STS_ENDPOINTS = [closed_port_url()]
    settings.STS_BROKER_CHAINED = "false"
    client = Client()
    client.force_login(world.alice)
    response = _post(client, "111111111111", "cloud-eng", "cli")
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert "could not be reached" in response.content.decode()  # type: ignore[attr-defined]


def test_portal_offers_actions_for_usable_roles_and_shows_grant_time_left(
    world: World,
) -> None:
    now = timezone.now()
    GrantFactory(
        request__requester=world.alice,
        request__account=world.pb_prod,
        request__role=world.admin,
        starts_at=now,
        ends_at=now + timedelta(hours=2, minutes=1),
    )
    client = Client()
    client.force_login(world.alice)
    body = client.get("/").content.decode()
    # cloud-eng in pb-dev and pb-prod (standing), admin in pb-prod (grant)
    assert body.count('value="console"') == 3
    assert 'aria-label="Open the AWS console in pb-prod as admin"' in body
    assert "2\xa0hours left" in body or "2 hours left" in body
    assert 'action="/sessions/"' in body


def test_portal_says_how_long_a_session_lasts_and_until_when_one_can_start(
    world: World,
) -> None:
    now = timezone.now()
    GrantFactory(
        request__requester=world.alice,
        request__account=world.pb_prod,
        request__role=world.admin,
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(minutes=40, seconds=30),
    )
    client = Client()
    client.force_login(world.alice)
    body = client.get("/").content.decode()

    last_start = (now + timedelta(minutes=25, seconds=30)).strftime("%H:%M")
    assert f"Session: 40 min; new sessions until {last_start} UTC" in body
    assert "Session: 2 h<" in body  # cloud-eng's role limit, standing access


def test_portal_offers_no_session_in_a_grants_last_15_minutes(world: World) -> None:
    now = timezone.now()
    GrantFactory(
        request__requester=world.alice,
        request__account=world.pb_prod,
        request__role=world.admin,
        starts_at=now - timedelta(minutes=20),
        ends_at=now + timedelta(minutes=10),
    )
    client = Client()
    client.force_login(world.alice)
    body = client.get("/").content.decode()

    assert 'aria-label="Open the AWS console in pb-prod as admin"' not in body
    assert "Too late for a new session" in body
    refused = _post(client, "222222222222", "admin", "cli")
    assert refused.status_code == 409  # type: ignore[attr-defined]
    assert "less than 15 minutes" in refused.content.decode()  # type: ignore[attr-defined]


def test_no_credential_reaches_logs_or_audit_rows(
    world: World,
    broker: MotoServer,
    federation_stand_in: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = Client()
    client.force_login(world.alice)

    cli = client.post(
        "/sessions/",
        {"account": "111111111111", "role": "cloud-eng", "action": "cli"},
        HTTP_ACCEPT="application/json",
    ).json()
    console = client.post(
        "/sessions/",
        {"account": "111111111111", "role": "cloud-eng", "action": "console"},
        HTTP_ACCEPT="application/json",
    ).json()
    signin_token = parse_qs(urlsplit(console["SigninUrl"]).query)["SigninToken"][0]
    # A console session's own keys travel to the federation endpoint (in getSigninToken's
    # query string) and are never shown to the person: take them from the service itself.
    linked = issue_session(
        world.alice,
        account_id="111111111111",
        role="cloud-eng",
        kind="console",
        requested=None,
        now=timezone.now(),
        ip=None,
    )
    assert linked.console_url is not None
    console_keys = linked.credentials.credential_process()

    secrets = [cli["AccessKeyId"], cli["SecretAccessKey"], cli["SessionToken"], signin_token]
    secrets += [console_keys[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")]
    audit = json.dumps([[e.target, e.data] for e in AuditEvent.objects.all()], ensure_ascii=False)
    issuance_rows = json.dumps(list(SessionIssuance.objects.values()), default=str)
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in audit
        assert secret not in issuance_rows
    assert AuditEvent.objects.filter(event_type="issuance.issued").count() == 3


def test_access_log_lines_of_the_stand_in_lose_their_secrets() -> None:
    server_log = logging.getLogger("django.server")
    assert any(isinstance(f, RedactCredentials) for f in server_log.filters)
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /demo-federation/?Action=getSigninToken&Session=%7B%22k%22%7D HTTP/1.1", "200", "9"),
        None,
    )
    server_log.filters[0].filter(record)
    line = record.getMessage()
    assert "Session=<redacted>" in line and "%7B" not in line
    assert redact("/x?Action=login&SigninToken=abc&Destination=d") == (
        "/x?Action=login&SigninToken=<redacted>&Destination=d"
    )


@pytest.mark.parametrize("minutes", ["abc", "-5", "10", "99999999999999999999"])
def test_bad_durations_from_the_form_are_a_clear_400(
    world: World, broker: MotoServer, minutes: str
) -> None:
    client = Client()
    client.force_login(world.alice)
    response = _post(client, "111111111111", "cloud-eng", "cli", duration_minutes=minutes)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "between 15 minutes and 12 hours" in response.content.decode()  # type: ignore[attr-defined]
