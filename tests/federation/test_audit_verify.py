"""The fast verifier: same answers as the event-by-event check, in one process or several."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from federation.audit.chain import record_event, verify_chain
from federation.audit.hashing import canonical_record, canonical_record_text, chain_hash
from federation.models import AuditEvent

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    seq=st.integers(min_value=1, max_value=2**62),
    at=st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    text=st.text(),
    ip=st.none() | st.sampled_from(["10.0.0.1", "2001:db8::1"]),
    data=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_the_verifiers_record_is_the_writers_record_byte_for_byte(
    seq: int, at: datetime, text: str, ip: str | None, data: dict[str, object]
) -> None:
    fields = {"event_type": text, "actor": text[::-1], "account_id": "", "target": text}
    assert canonical_record_text(
        seq=seq, at_iso=at.isoformat(timespec="microseconds"), ip=ip, data=data, **fields
    ) == canonical_record(seq=seq, at=at, ip=ip, data=data, **fields)


def _tamper(sql: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = DEFAULT")


def _events(n: int) -> None:
    start = timezone.now()
    for i in range(n):
        # Odd microseconds and non-ASCII text: the SQL-side time format must match Python's.
        record_event("e", now=start + timedelta(microseconds=7 * i + 1), actor="ünï", data={"i": i})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("jobs", [1, 3])
def test_parallel_verify_agrees_on_an_intact_chain(jobs: int) -> None:
    _events(10)
    status = verify_chain(jobs=jobs)
    assert (status.ok, status.verified_up_to) == (True, 10)
    assert status.head_hash == verify_chain().head_hash


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("sql", "bad", "problem"),
    [
        ("UPDATE federation_auditevent SET actor = 'x' WHERE seq = 9", 9, "content"),
        ("DELETE FROM federation_auditevent WHERE seq = 7", 7, "missing"),
        ("UPDATE federation_auditevent SET prev_hash = repeat('a', 64) WHERE seq = 4", 4, "prev"),
        ("DELETE FROM federation_auditevent WHERE seq >= 9", 9, "after the last stored"),
    ],
)
def test_parallel_verify_names_the_same_first_bad_event(sql: str, bad: int, problem: str) -> None:
    _events(10)
    _tamper(sql, [])
    for jobs in (1, 3):
        status = verify_chain(jobs=jobs)
        assert (status.ok, status.first_bad_seq) == (False, bad), (jobs, status)
        assert problem in status.problem
    with pytest.raises(CommandError, match=f"#{bad}"):
        call_command("audit_verify", "--jobs", "3")


@pytest.mark.django_db(transaction=True)
def test_a_rewrite_hashed_consistently_up_to_a_range_end_is_caught_at_the_join() -> None:
    _events(10)  # with 3 jobs the ranges are 1-4, 5-8, 9-10
    event = AuditEvent.objects.get(seq=8)
    forged = chain_hash(
        event.prev_hash or "",
        canonical_record(
            seq=8,
            at=event.at,
            event_type=event.event_type,
            actor="mallory",
            account_id=event.account_id,
            target=event.target,
            ip=event.ip,
            data=event.data,
        ),
    )
    _tamper("UPDATE federation_auditevent SET actor = 'mallory', hash = %s WHERE seq = 8", [forged])
    for jobs in (1, 3):
        status = verify_chain(jobs=jobs)
        assert (status.ok, status.first_bad_seq) == (False, 9), (jobs, status)
        assert "previous hash" in status.problem


@pytest.mark.django_db(transaction=True)
def test_data_the_fast_encoder_writes_differently_still_verifies_and_tampering_is_caught() -> None:
    # orjson spells 1e16 as 1e16 (the writer's json module: 1e+16) and cannot hold 2**70: the
    # verifier must fall back to the writer's encoding before it calls an event bad.
    start = timezone.now()
    for i, data in enumerate([{"f": 1e16}, {"big": 2**70}, {"s": "naïve\u2028"}, {"i": 1}]):
        record_event("e", now=start + timedelta(microseconds=i), actor="a", data=data)
    assert verify_chain().ok
    _tamper(
        "UPDATE federation_auditevent SET data = jsonb_build_object('big', %s::numeric)"
        " WHERE seq = 2",
        [str(2**70 + 1)],
    )
    for jobs in (1, 3):
        status = verify_chain(jobs=jobs)
        assert (status.ok, status.first_bad_seq) == (False, 2), (jobs, status)
        assert "content" in status.problem
