"""Batched audit sequencing: writers take no shared lock, one sequencer places events in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import DatabaseError, OperationalError, connection, connections, transaction
from django.test import Client, override_settings
from django.utils import timezone

from federation.audit.chain import record_event, verify_chain
from federation.audit.sequencer import SEQUENCER_LOCK_KEY, sequence_pending
from federation.models import AuditEvent
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _batched() -> Iterator[None]:
    with override_settings(AUDIT_SEQUENCING="batched", AUDIT_SEQUENCER_BATCH=50):
        yield


def _contiguous() -> list[int]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))


@pytest.mark.django_db
def test_writer_inserts_unsequenced_and_the_sequencer_places_it_in_the_chain() -> None:
    first = record_event("e", now=timezone.now(), actor="x", data={"i": 1})
    second = record_event("e", now=timezone.now(), actor="y", data={"i": 2})
    assert (first.seq, first.hash, second.seq) == (None, None, None)
    assert verify_chain().verified_up_to == 0

    assert sequence_pending() == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert first.sequenced_at is not None and first.recorded_at is not None
    assert verify_chain().verified_up_to == 2
    assert sequence_pending() == 0


@pytest.mark.django_db
def test_unsequenced_event_still_rolls_back_with_its_change() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event("mapping.import", now=timezone.now(), actor="x")
        raise RuntimeError("change failed")
    assert AuditEvent.objects.count() == 0
    assert sequence_pending() == 0


@pytest.mark.django_db
def test_batches_continue_one_chain() -> None:
    for i in range(120):
        record_event("e", now=timezone.now(), actor="x", data={"i": i})
    assert sequence_pending(batch_size=50) == 120
    assert _contiguous() == list(range(1, 121))
    assert verify_chain().ok


def _sql(sql: str, params: list[object]) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        # a pending event's content
        "UPDATE federation_auditevent SET actor = 'mallory' WHERE id = %s",
        # a place without the rest of it
        "UPDATE federation_auditevent SET seq = 7 WHERE id = %s",
        # a place given together with a content edit
        "UPDATE federation_auditevent SET seq = 7, prev_hash = 'a', hash = 'b',"
        " sequenced_at = now(), actor = 'mallory' WHERE id = %s",
        # the time it was written (outside the hash, still append-only)
        "UPDATE federation_auditevent SET seq = 7, prev_hash = 'a', hash = 'b',"
        " sequenced_at = now(), recorded_at = now() - interval '1 day' WHERE id = %s",
        "DELETE FROM federation_auditevent WHERE id = %s",
    ],
)
def test_trigger_refuses_every_change_to_a_pending_event_but_its_placing(sql: str) -> None:
    event = record_event("e", now=timezone.now(), actor="x")
    with pytest.raises(DatabaseError, match="append-only"):
        _sql(sql, [event.pk])
    event.refresh_from_db()
    assert (event.actor, event.seq) == ("x", None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE federation_auditevent SET seq = seq + 100 WHERE id = %s",
        "UPDATE federation_auditevent SET hash = repeat('f', 64) WHERE id = %s",
        "UPDATE federation_auditevent SET seq = NULL, prev_hash = NULL, hash = NULL,"
        " sequenced_at = NULL WHERE id = %s",
        "UPDATE federation_auditevent SET actor = 'mallory' WHERE id = %s",
        "DELETE FROM federation_auditevent WHERE id = %s",
    ],
)
def test_trigger_refuses_every_change_after_sequencing(sql: str) -> None:
    event = record_event("e", now=timezone.now(), actor="x")
    sequence_pending()
    with pytest.raises(DatabaseError, match="append-only"):
        _sql(sql, [event.pk])
    event.refresh_from_db()
    assert (event.actor, event.seq) == ("x", 1)
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_a_second_sequencer_leaves_the_work_to_the_one_holding_the_lock() -> None:
    record_event("e", now=timezone.now(), actor="x")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK_KEY])
            assert sequence_pending() == 0
            assert AuditEvent.objects.get().seq is None
            cursor.execute("COMMIT")
        assert sequence_pending() == 1
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_an_event_committed_late_is_placed_after_those_committed_before_it() -> None:
    late = connections.create_connection("default")
    try:
        with late.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "INSERT INTO federation_auditevent (at, event_type, actor, account_id, target,"
                " data) VALUES (now(), 'late', 'x', '', '', '{}') RETURNING id"
            )
            late_id = cursor.fetchone()[0]
            early = record_event("early", now=timezone.now(), actor="y")
            assert sequence_pending() == 1  # the open transaction neither blocks nor is lost
            cursor.execute("COMMIT")
        assert sequence_pending() == 1
    finally:
        late.close()
    assert late_id < early.pk
    assert AuditEvent.objects.get(pk=early.pk).seq == 1
    assert AuditEvent.objects.get(pk=late_id).seq == 2
    assert verify_chain().verified_up_to == 2


@pytest.mark.django_db(transaction=True)
def test_sixteen_writers_and_two_sequencers_leave_one_chain_without_gaps() -> None:
    writers, per_writer = 16, 25
    barrier = threading.Barrier(writers + 2)
    done = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    record_event("concurrent", now=timezone.now(), actor=f"w{n}", data={"i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def sequence() -> None:
        try:
            barrier.wait()
            while not done.is_set():
                sequence_pending()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    sequencers = [threading.Thread(target=sequence) for _ in range(2)]
    for t in threads + sequencers:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in sequencers:
        t.join()
    sequence_pending()
    assert errors == []
    total = writers * per_writer
    assert _contiguous() == list(range(1, total + 1))  # every event placed once, no gap
    status = verify_chain()
    assert status.ok, status
    assert status.verified_up_to == total


def _backend_waiting_on_a_lock(timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'UPDATE federation_auditevent%%'"
            )
            row = cursor.fetchone()
            if row:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError("the sequencer never reached its batch update")


@pytest.mark.django_db(transaction=True)
def test_a_sequencer_killed_mid_batch_loses_nothing_and_places_nothing_twice() -> None:
    for i in range(30):
        record_event("e", now=timezone.now(), actor="x", data={"i": i})
    last = AuditEvent.objects.order_by("-id").first()
    assert last is not None
    blocker = connections.create_connection("default")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            sequence_pending()
        except BaseException as exc:  # the crash, surfaced below
            outcome.append(exc)
        finally:
            connections.close_all()

    try:
        with blocker.cursor() as cursor:
            # Hold one row of the batch so the sequencer stops inside its UPDATE, with the rows
            # before it already written in its open transaction; then kill its backend.
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT id FROM federation_auditevent WHERE id = %s FOR UPDATE", [last.pk]
            )
            crashed = threading.Thread(target=run)
            crashed.start()
            pid = _backend_waiting_on_a_lock()
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            crashed.join()
            cursor.execute("COMMIT")
    finally:
        blocker.close()
    assert outcome and isinstance(outcome[0], OperationalError)
    assert AuditEvent.objects.filter(seq__isnull=False).count() == 0  # the batch rolled back
    assert sequence_pending() == 30
    assert _contiguous() == list(range(1, 31))
    assert verify_chain().verified_up_to == 30


@pytest.mark.django_db
def test_audit_page_shows_pending_events_apart(client: Client) -> None:
    record_event("signin.success", now=timezone.now(), actor="placed@corp.example")
    sequence_pending()
    record_event("signin.success", now=timezone.now(), actor="waiting@corp.example")
    with override_settings(AUDITOR_GROUPS=["fed-auditors"]):
        client.force_login(UserFactory(directory_groups=["fed-auditors"]))
        body = client.get("/audit/").content.decode()
    pending = body[body.index("Pending (1)") : body.index("Filter the audit log")]
    assert "waiting@corp.example" in pending and "placed@corp.example" not in pending
    assert "verified up to event #1" in body


@pytest.mark.django_db
def test_readyz_reports_a_sequencer_that_fell_behind(client: Client) -> None:
    record_event("e", now=timezone.now(), actor="x")
    response = client.get("/readyz")
    assert response.json()["checks"]["audit_sequencing"].startswith("ok")
    with override_settings(AUDIT_SEQUENCING_LAG_LIMIT=timedelta(seconds=-1)):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["audit_sequencing"].startswith("behind")
    sequence_pending()
    with override_settings(AUDIT_SEQUENCING_LAG_LIMIT=timedelta(seconds=-1)):
        assert "0 pending" in client.get("/readyz").json()["checks"]["audit_sequencing"]
