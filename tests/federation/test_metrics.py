"""/metrics (issue 18 item 3): who may read it, and the counters moving with real sign-ins
(pysaml2 IdP), issuances (moto over HTTP) and refusals; the gauges read from the database."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.models import Grant
from federation.audit.chain import record_event
from federation.issuance.service import NotEntitled, issue_session
from federation.models import AuditEvent, DriftFinding
from tests.aws import MotoServer, free_port
from tests.factories import GrantFactory
from tests.issuance import World, closed_port_url
from tests.metrics import parse, scrape
from tests.saml_idp import SamlFlow

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-" + "x" * 40
Capture = Callable[..., Any]


# --------------------------------------------------------------------------- access


def test_loopback_reads_metrics_without_a_token() -> None:
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        got = scrape(REMOTE_ADDR=address)
        assert "fedaccess_signins_total" in got.text, address


@pytest.mark.parametrize("address", ["192.0.2.7", "10.0.0.1", "::ffff:192.0.2.7", "", "junk"])
def test_other_clients_are_refused_without_a_token(address: str) -> None:
    answer = Client().get("/metrics", REMOTE_ADDR=address)
    assert answer.status_code == 403
    assert b"fedaccess" not in answer.content
    assert answer.content == b"Forbidden\n"


def test_a_forwarded_header_does_not_make_a_client_loopback() -> None:
    answer = Client().get(
        "/metrics",
        REMOTE_ADDR="192.0.2.7",
        HTTP_X_FORWARDED_FOR="127.0.0.1",
        HTTP_X_REAL_IP="127.0.0.1",
        HTTP_FORWARDED="for=127.0.0.1",
    )
    assert answer.status_code == 403


def test_with_a_token_set_every_client_needs_it(
    settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    settings.METRICS_TOKEN = TOKEN
    caplog.set_level(logging.WARNING, logger="federation.observability")
    client = Client()
    refused = [
        client.get("/metrics"),  # loopback is no longer enough
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"),
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer "),
        client.get("/metrics", {"token": TOKEN}),
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer t\u00e9st"),
    ]
    for answer in refused:
        assert answer.status_code == 401
        assert answer["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert answer.content == b"Unauthorized\n"
    # The refusal is logged without what was sent.
    assert "wrong-token" not in caplog.text and TOKEN not in caplog.text
    assert "metrics: refused (401)" in caplog.text

    got = scrape(REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert "fedaccess_grants_active" in got.text
    assert scrape(HTTP_AUTHORIZATION=f"bearer  {TOKEN}").text


def test_metrics_is_read_only() -> None:
    assert Client().post("/metrics").status_code == 405
    assert Client().head("/metrics").status_code == 200


# --------------------------------------------------------------------------- counters


def test_a_saml_sign_in_moves_the_sign_in_and_http_counters(
    saml_flow: SamlFlow, django_capture_on_commit_callbacks: Capture
) -> None:
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        assert saml_flow.sign_in().status_code == 302
    after = scrape()

    signins = ("fedaccess_signins_total", {"idp": "corp", "protocol": "saml"})
    assert after.value(signins[0], **signins[1]) == before.value(signins[0], **signins[1]) + 1
    acs = {"route": "saml/<slug:slug>/acs/", "method": "POST", "status": "302"}
    assert after.value("fedaccess_http_responses_total", **acs) == (
        before.value("fedaccess_http_responses_total", **acs) + 1
    )
    assert after.total("fedaccess_http_request_duration_seconds_count", route=acs["route"]) > 0


def test_a_replayed_sign_in_counts_a_refusal_by_idp_and_reason(
    saml_flow: SamlFlow, django_capture_on_commit_callbacks: Capture
) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    with django_capture_on_commit_callbacks(execute=True):
        assert saml_flow.post(xml, seen.relay_state).status_code == 302
    # The attacker copied the victim's whole POST, login-start cookie included.
    attacker = Client()
    attacker.cookies = SimpleCookie(saml_flow.client.cookies)
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        assert saml_flow.post(xml, seen.relay_state, client=attacker).status_code == 403
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    reason = AuditEvent.objects.get(event_type="signin.refused").data["reason"]
    assert reason.startswith("saml.")
    assert grew("fedaccess_signin_refusals_total", idp="corp", protocol="saml", reason=reason) == 1
    assert grew("fedaccess_refusals_total", event="signin.refused", reason=reason) == 1
    assert grew("fedaccess_signins_total", idp="corp", protocol="saml") == 0


def test_a_made_up_idp_in_the_url_is_counted_as_unknown_never_by_its_name(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        for slug in ("attacker-chosen-1", "attacker-chosen-2"):
            assert Client().get(f"/saml/{slug}/login/").status_code == 404
            assert Client().get(f"/oidc/{slug}/callback/").status_code == 404
    after = scrape()

    refused = "fedaccess_signin_refusals_total"
    assert after.value(refused, idp="unknown", protocol="saml", reason="saml.unknown_idp") == (
        before.value(refused, idp="unknown", protocol="saml", reason="saml.unknown_idp") + 2
    )
    assert after.value(refused, idp="unknown", protocol="oidc", reason="oidc.unknown_idp") == (
        before.value(refused, idp="unknown", protocol="oidc", reason="oidc.unknown_idp") + 2
    )
    # Neither the slug nor the path is ever a label value.
    assert "attacker-chosen" not in after.text


def test_an_issuance_moves_issuances_and_the_sts_latency_histogram(
    world: World, broker: MotoServer, django_capture_on_commit_callbacks: Capture
) -> None:
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        issue_session(
            world.alice,
            account_id=world.pb_dev.account_id,
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip="192.0.2.10",
        )
    after = scrape()

    issued = {"account": "111111111111", "role": "cloud-eng", "region": "eu-west-1", "kind": "cli"}
    assert after.value("fedaccess_issuances_total", **issued) == (
        before.value("fedaccess_issuances_total", **issued) + 1
    )
    latency = {"operation": "assume_role", "region": "eu-west-1", "outcome": "ok"}
    count = "fedaccess_sts_request_duration_seconds_count"
    assert after.value(count, **latency) == before.value(count, **latency) + 1
    assert after.value("fedaccess_sts_request_duration_seconds_sum", **latency) > before.value(
        "fedaccess_sts_request_duration_seconds_sum", **latency
    )


def test_a_dead_sts_endpoint_counts_a_failover(
    world: World,
    broker: MotoServer,
    settings: SettingsWrapper,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    settings.STS_ENDPOINTS = [f"eu-west-1={closed_port_url()}", f"eu-central-1={broker.url}"]
    settings.STS_BROKER_CHAINED = "false"
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        session = issue_session(
            world.alice,
            account_id=world.pb_dev.account_id,
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
    after = scrape()

    assert session.region == "eu-central-1"
    failover = {"region": "eu-west-1", "problem": "connection"}
    assert after.value("fedaccess_sts_failovers_total", **failover) == (
        before.value("fedaccess_sts_failovers_total", **failover) + 1
    )
    dead = {"operation": "assume_role", "region": "eu-west-1", "outcome": "failover"}
    count = "fedaccess_sts_request_duration_seconds_count"
    assert after.value(count, **dead) == before.value(count, **dead) + 1


def test_a_refused_issuance_is_counted_by_event_and_reason_not_by_account(
    world: World, broker: MotoServer, django_capture_on_commit_callbacks: Capture
) -> None:
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(NotEntitled):
        issue_session(
            world.dora,
            account_id="999999999999",
            role="not-a-role",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
    after = scrape()

    labels = {"event": "issuance.refused", "reason": "not_entitled"}
    assert after.value("fedaccess_refusals_total", **labels) == (
        before.value("fedaccess_refusals_total", **labels) + 1
    )
    # Neither the asked-for account nor the role becomes a label value (the raw text is not
    # searched: a float sample such as 47.089999999999996 can hold the digits).
    label_values = {value for _, labels in after.samples for _, value in labels}
    assert not label_values & {"999999999999", "not-a-role"}


def test_a_rolled_back_action_is_not_counted(world: World, broker: MotoServer) -> None:
    # No on-commit capture: the test's transaction never commits, so neither does the count.
    before = scrape()
    issue_session(
        world.alice,
        account_id=world.pb_dev.account_id,
        role="cloud-eng",
        kind="cli",
        requested=None,
        now=timezone.now(),
        ip=None,
    )
    after = scrape()
    assert after.total("fedaccess_issuances_total") == before.total("fedaccess_issuances_total")


# --------------------------------------------------------------------------- gauges


def test_gauges_read_grants_revocations_drift_and_the_audit_backlog(
    world: World, settings: SettingsWrapper
) -> None:
    now = timezone.now()
    empty = scrape()
    assert empty.value("fedaccess_grants_active") == 0
    assert empty.value("fedaccess_revocations_owed") == 0
    assert empty.value("fedaccess_drift_roles") == 0
    assert empty.value("fedaccess_metrics_database_up") == 1

    GrantFactory(user=world.alice, account=world.pb_prod, role=world.admin)
    GrantFactory(
        user=world.dora,
        account=world.pb_prod,
        role=world.admin,
        starts_at=now - timedelta(hours=3),
        ends_at=now - timedelta(hours=1),
    )  # ended: not active, whatever its state column says
    GrantFactory(
        user=world.alice,
        account=world.pb_dev,
        role=world.admin,
        state=Grant.State.REVOKED,
        revoked_at=now - timedelta(minutes=10),
    )
    DriftFinding.objects.create(
        account_id="111111111111",
        account_alias="pb-dev",
        role_name="cloud-eng",
        action="update",
        first_seen=now,
        last_seen=now,
    )
    settings.AUDIT_SEQUENCING = "batched"
    record_event("test.pending", actor="system", now=now)

    got = scrape()
    assert got.value("fedaccess_grants_active") == 1
    assert got.value("fedaccess_revocations_owed") == 1
    assert 590 <= got.value("fedaccess_revocation_owed_oldest_age_seconds") < 3600
    assert got.value("fedaccess_drift_roles") == 1
    assert got.value("fedaccess_audit_unsequenced_events") == 1
    assert got.value("fedaccess_audit_sequencing_lag_seconds") >= 0


@pytest.mark.django_db(transaction=True)
def test_the_scrape_answers_its_counters_when_the_database_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database server that went away: the gauges are left out, the counters are not.
    saved = connection.settings_dict["PORT"], connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", free_port()
    try:
        answer = Client(raise_request_exception=False).get("/metrics")
    finally:
        connection.close()
        connection.settings_dict["PORT"], connection.settings_dict["HOST"] = saved
    assert answer.status_code == 200
    got = parse(answer.content.decode())
    assert got.value("fedaccess_metrics_database_up") == 0
    assert "fedaccess_signins_total" in got.text
    assert "fedaccess_grants_active" not in got.names()
    assert "metrics: database gauges left out (OperationalError" in caplog.text
