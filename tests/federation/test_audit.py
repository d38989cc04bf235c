from __future__ import annotations

import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from federation.audit.chain import record_event, verify_chain
from federation.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_events_form_a_verifiable_chain() -> None:
    user = UserFactory()
    first = record_event(
        "mapping.import", now=timezone.now(), actor=user, data={"before": 1, "after": 2}
    )
    second = record_event("signin.ok", now=timezone.now(), actor="system", data={"groups": ["a"]})
    assert second.prev_hash == first.hash
    assert second.seq == first.seq + 1
    assert verify_chain().ok
    assert verify_chain().verified_up_to == second.seq


def test_secret_bearing_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="SessionToken"):
        record_event(
            "issue", now=timezone.now(), actor="x", data={"creds": {"SessionToken": "abc"}}
        )
    assert AuditEvent.objects.count() == 0


def test_event_rolls_back_with_the_change_it_describes() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event("mapping.import", now=timezone.now(), actor="x")
        raise RuntimeError("change failed")
    assert AuditEvent.objects.count() == 0
    record_event("mapping.import", now=timezone.now(), actor="x")
    assert verify_chain().ok


def test_database_refuses_update_and_delete_of_audit_rows() -> None:
    event = record_event("admin.action", now=timezone.now(), actor="x", data={"n": 1})
    for sql in (
        "UPDATE federation_auditevent SET actor = 'mallory' WHERE id = %s",
        "DELETE FROM federation_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).actor == "x"


def _tamper(sql: str, params: list[object]) -> None:
    """Edit a row as a DBA would, bypassing the trigger for this session only."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = DEFAULT")


def test_verify_names_the_first_edited_event() -> None:
    events = [record_event("e", now=timezone.now(), actor="x", data={"i": i}) for i in range(5)]
    _tamper(
        "UPDATE federation_auditevent SET data = %s WHERE seq = %s", ['{"i": 99}', events[2].seq]
    )
    status = verify_chain()
    assert not status.ok
    assert status.first_bad_seq == events[2].seq
    with pytest.raises(CommandError, match=f"#{events[2].seq}"):
        call_command("audit_verify")


def test_verify_detects_a_deleted_event() -> None:
    events = [record_event("e", now=timezone.now(), actor="x", data={"i": i}) for i in range(4)]
    _tamper("DELETE FROM federation_auditevent WHERE seq = %s", [events[1].seq])
    assert verify_chain().first_bad_seq == events[1].seq


def test_verify_detects_a_truncated_tail() -> None:
    events = [record_event("e", now=timezone.now(), actor="x", data={"i": i}) for i in range(4)]
    _tamper("DELETE FROM federation_auditevent WHERE seq = %s", [events[-1].seq])
    status = verify_chain()
    assert not status.ok
    assert status.first_bad_seq == events[-1].seq


def test_audit_verify_command_reports_an_intact_chain(capsys: pytest.CaptureFixture[str]) -> None:
    record_event("e", now=timezone.now(), actor="x")
    call_command("audit_verify")
    assert "1 event(s) verified" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain() -> None:
    writers, per_writer = 8, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                record_event("concurrent", now=timezone.now(), actor=f"writer{n}", data={"i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AuditEvent.objects.count() == writers * per_writer
    status = verify_chain()
    assert status.ok, status
    assert status.verified_up_to == writers * per_writer
