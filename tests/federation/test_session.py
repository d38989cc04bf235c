from __future__ import annotations

import time

import pytest
from django.test import Client, override_settings

from tests.factories import UserFactory

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
    from federation.models import AuditEvent

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
