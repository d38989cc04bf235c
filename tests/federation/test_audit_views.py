from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from federation.audit.chain import record_event
from federation.models import AuditEvent
from tests.factories import UserFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("_groups"),
]


@pytest.fixture
def _groups() -> object:
    with override_settings(ADMIN_GROUPS=["fed-admins"], AUDITOR_GROUPS=["fed-auditors"]):
        yield


def _auditor(client: Client) -> None:
    client.force_login(UserFactory(directory_groups=["fed-auditors"], email="aud@corp.example"))


def test_only_auditors_and_admins_read_the_log_and_refusals_are_audited(client: Client) -> None:
    assert client.get("/audit/").status_code == 302  # anonymous: sign in first
    client.force_login(UserFactory(directory_groups=["employees"], email="eve@corp.example"))
    response = client.get("/audit/")
    assert response.status_code == 403
    assert "This attempt has been recorded." in response.content.decode()
    denied = AuditEvent.objects.get(event_type="access.denied")
    assert (denied.actor, denied.target) == ("eve@corp.example", "/audit/")
    assert client.get("/audit/export.jsonl").status_code == 403

    client.force_login(UserFactory(directory_groups=["fed-admins"]))
    assert client.get("/audit/").status_code == 200


def test_log_is_newest_first_filterable_and_shows_chain_status(client: Client) -> None:
    record_event("signin.success", now=timezone.now(), actor="alice@corp.example")
    record_event(
        "session.issued", now=timezone.now(), actor="alice@corp.example", account_id="111111111111"
    )
    record_event(
        "session.issued", now=timezone.now(), actor="bob@corp.example", account_id="222222222222"
    )
    _auditor(client)

    body = client.get("/audit/").content.decode()
    assert body.index("bob@corp.example") < body.index("signin.success")
    assert "verified up to event #3" in body

    filtered = client.get("/audit/", {"event_type": "session.", "account": "111111111111"})
    text = filtered.content.decode()
    assert "alice@corp.example" in text and "bob@corp.example" not in text


def test_bad_filter_is_a_clear_400(client: Client) -> None:
    _auditor(client)
    response = client.get("/audit/", {"account": "12345"})
    assert response.status_code == 400
    assert "exactly 12 digits" in response.content.decode()
    response = client.get("/audit/", {"since": "2026-02-01T00:00", "until": "2026-01-01T00:00"})
    assert response.status_code == 400


def test_pages_through_older_events(client: Client) -> None:
    for i in range(60):
        record_event("e", now=timezone.now(), actor=f"user{i}@corp.example")
    _auditor(client)
    first = client.get("/audit/").content.decode()
    assert "user59@" in first and "user5@" not in first
    assert "before=11" in first
    older = client.get("/audit/", {"before": 11}).content.decode()
    assert "user5@" in older and "user59@" not in older


def test_page_reports_a_broken_chain(client: Client) -> None:
    from django.db import connection

    record_event("e", now=timezone.now(), actor="x")
    record_event("e", now=timezone.now(), actor="y")
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE federation_auditevent SET actor = 'z' WHERE seq = 2")
        cursor.execute("SET session_replication_role = DEFAULT")
    _auditor(client)
    assert "BROKEN at event #2" in client.get("/audit/").content.decode()


def test_export_is_json_lines_with_hashes_and_is_itself_audited(client: Client) -> None:
    record_event(
        "signin.success", now=timezone.now(), actor="alice@corp.example", data={"groups": ["g"]}
    )
    _auditor(client)
    response = client.get("/audit/export.jsonl", {"event_type": "signin."})
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert response["Content-Type"] == "application/x-ndjson"
    assert [line["event_type"] for line in lines] == ["signin.success"]
    assert lines[0]["data"] == {"groups": ["g"]} and len(lines[0]["hash"]) == 64
    assert AuditEvent.objects.filter(event_type="audit.export").count() == 1


def test_nobody_can_edit_through_the_audit_pages(client: Client) -> None:
    _auditor(client)
    assert client.post("/audit/").status_code in (403, 405)
