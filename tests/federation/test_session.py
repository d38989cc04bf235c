from __future__ import annotations

import time

import pytest
from django.test import Client, override_settings

from federation.models import AuditEvent
from tests.factories import UserFactory
from tests.saml_idp import SamlFlow

pytestmark = pytest.mark.django_db


@override_settings(SESSION_IDLE_TIMEOUT_SECONDS=60)
def test_idle_session_is_signed_out(client: Client) -> None:
    client.force_login(UserFactory())
    assert client.get("/").status_code == 200
    session = client.session
    session["last_seen"] = int(time.time()) - 61
    session.save()
    assert client.get("/").status_code == 302


@override_settings(SESSION_IDLE_TIMEOUT_SECONDS=600)
def test_active_session_stays_signed_in(client: Client) -> None:
    client.force_login(UserFactory())
    for _ in range(3):
        assert client.get("/").status_code == 200
    # Idle for just under the limit: still signed in, and the clock restarts.
    session = client.session
    session["last_seen"] = int(time.time()) - 590
    session.save()
    assert client.get("/").status_code == 200
    assert client.session["last_seen"] >= int(time.time()) - 5


def test_logout_by_cross_site_post_without_csrf_token_is_refused() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory())
    assert client.post("/logout/").status_code == 403
    assert client.get("/").status_code == 200


def test_forged_post_is_refused_with_a_page_and_an_audit_event() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(email="victim@corp.example"))
    response = client.post("/sessions/", {"account": "111111111111", "role": "admin"})
    assert response.status_code == 403
    assert "could not be verified as coming from this site" in response.content.decode()
    event = AuditEvent.objects.get(event_type="request.csrf_refused")
    assert (event.actor, event.target, event.data["method"]) == (
        "victim@corp.example",
        "/sessions/",
        "POST",
    )


# --- the absolute limit (issue 12 item 5) ----------------------------------------------------


def test_sign_in_stamps_the_session_with_its_sign_in_time(saml_flow: SamlFlow) -> None:
    before = int(time.time())
    assert saml_flow.sign_in().status_code == 302
    assert before <= saml_flow.client.session["signed_in_at"] <= int(time.time())


@override_settings(SESSION_COOKIE_AGE=3600, SESSION_IDLE_TIMEOUT_SECONDS=600)
def test_session_ends_at_its_absolute_limit_however_active(saml_flow: SamlFlow) -> None:
    assert saml_flow.sign_in().status_code == 302
    client = saml_flow.client
    assert client.get("/").status_code == 200
    # Signed in just over the limit ago, active a moment ago: every request wrote the session,
    # which renewed Django's own expiry each time.
    session = client.session
    session["signed_in_at"] = int(time.time()) - 3601
    session["last_seen"] = int(time.time()) - 5
    session.save()
    assert session.get_expiry_age() > 3000

    answer = client.get("/requests/?tab=mine")

    assert (answer.status_code, answer["Location"]) == (302, "/login/?next=/requests/%3Ftab%3Dmine")
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302
    event = AuditEvent.objects.get(event_type="session.expired")
    assert (event.actor, event.data["limit"]) == ("alice@corp.example", "absolute")


@override_settings(SESSION_COOKIE_AGE=3600, SESSION_IDLE_TIMEOUT_SECONDS=600)
def test_session_just_inside_its_absolute_limit_stays(saml_flow: SamlFlow) -> None:
    assert saml_flow.sign_in().status_code == 302
    session = saml_flow.client.session
    session["signed_in_at"] = int(time.time()) - 3590
    session.save()
    assert saml_flow.client.get("/").status_code == 200
    assert not AuditEvent.objects.filter(event_type="session.expired").exists()


@override_settings(SESSION_IDLE_TIMEOUT_SECONDS=60)
def test_idle_end_is_audited(client: Client) -> None:
    client.force_login(UserFactory(email="idle@corp.example"))
    assert client.get("/").status_code == 200
    session = client.session
    session["last_seen"] = int(time.time()) - 61
    session.save()
    assert client.get("/")["Location"] == "/login/?next=/"
    event = AuditEvent.objects.get(event_type="session.expired")
    assert (event.actor, event.data["limit"]) == ("idle@corp.example", "idle")


def test_a_session_without_a_sign_in_time_gets_one_and_continues(client: Client) -> None:
    client.force_login(UserFactory())
    assert client.get("/").status_code == 200
    assert abs(client.session["signed_in_at"] - int(time.time())) <= 5
