"""The audit sequencer: gives committed, unsequenced events their place in the hash chain.

Writers insert their event unsequenced, inside the transaction of the change it describes, and
take no shared lock (``record_event``). The sequencer then numbers and hashes the pending events
in batches, one transaction and one lock per batch rather than per event, the way transparency
logs (Trillian, Tessera) integrate entries.

One sequencer at a time: each batch first takes a PostgreSQL transaction-level advisory lock.
A second sequencer (another worker, a second ``audit_sequencer`` process) does not wait for it,
it finds the lock taken and returns, so two sequencers can never fork the chain. The batch's
UPDATE only fills rows whose ``seq`` is still NULL and checks it filled them all; the database
trigger lets those four columns change once, from NULL, and nothing else (migration 0014).

Commit order: in READ COMMITTED every batch sees exactly the events committed before its query,
so an event committed before a sequencer run starts gets its place in that run; one committed
later gets it in the next. A sequencer that dies mid-batch leaves nothing behind: its
transaction rolls back and the next run sequences the same events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Min
from django.db.models.functions import Now

from federation.audit.hashing import (
    AT_ISO_SQL,
    GENESIS_HASH,
    canonical_record_text,
    chain_hash,
)
from federation.models import AuditChainHead, AuditEvent

# pg advisory lock key: "fedaudit" read as eight ASCII bytes, kept under 2**63.
SEQUENCER_LOCK_KEY = int.from_bytes(b"fedaudit", "big") & 0x7FFF_FFFF_FFFF_FFFF


class SequencingConflict(RuntimeError):
    """A pending event was sequenced by someone else mid-batch: the batch is rolled back."""


@dataclass(frozen=True)
class Placement:
    seq: int
    prev_hash: str
    hash: str


# In its own transactions only (SET LOCAL): read the pending events through the partial index, in
# id order, stopping at the batch size. With statistics that lag a burst (a backlog of 900,000
# estimated at 500 rows) the planner chose a bitmap scan of every pending row and a sort, per
# batch: sequencing a large backlog became quadratic (bench/audit.py).
_INDEX_ORDER = (
    ", set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)"
)


def _take_lock(*, wait: bool, own_transaction: bool = False) -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite (demo) serialises every write transaction anyway
    steer = _INDEX_ORDER if own_transaction else ""
    with connection.cursor() as cursor:
        if wait:
            cursor.execute(f"SELECT pg_advisory_xact_lock(%s){steer}", [SEQUENCER_LOCK_KEY])
            return True
        cursor.execute(f"SELECT pg_try_advisory_xact_lock(%s){steer}", [SEQUENCER_LOCK_KEY])
        row = cursor.fetchone()
        return bool(row and row[0])


def _head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


def _sequence_batch(limit: int) -> dict[int, Placement]:
    """Number and hash up to ``limit`` pending events (caller holds the lock, in a transaction)."""
    head = _head()
    rows = _pending(limit)
    if not rows:
        return {}
    placed: dict[int, Placement] = {}
    seq, prev = head.seq, head.hash
    for pk, at_iso, event_type, actor, account_id, target, ip, data in rows:
        seq += 1
        record = canonical_record_text(
            seq=seq,
            at_iso=at_iso,
            event_type=event_type,
            actor=actor,
            account_id=account_id,
            target=target,
            ip=ip,
            data=json.loads(data) if isinstance(data, str) else data,
        )
        digest = chain_hash(prev, record)
        placed[pk] = Placement(seq, prev, digest)
        prev = digest
    _write_places(placed)
    AuditChainHead.objects.filter(pk=1).update(seq=seq, hash=prev)
    return placed


_PENDING = (
    f"SELECT id, {AT_ISO_SQL}, event_type, actor, account_id, target, ip, data"  # noqa: S608 (constant)
    " FROM federation_auditevent WHERE seq IS NULL ORDER BY id LIMIT %s"
)


def _pending(limit: int) -> list[tuple[Any, ...]]:
    """The oldest ``limit`` pending events as plain values (the verifier's form: the time as its
    ISO string, the JSON as text), so placing and verifying hash the very same bytes."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_PENDING, [limit])
            return list(cursor.fetchall())
    events = AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:limit]
    return [
        (e.pk, e.at.astimezone(UTC).isoformat(timespec="microseconds"), e.event_type, e.actor,
         e.account_id, e.target, e.ip, e.data)
        for e in events
    ]  # fmt: skip


def _write_places(placed: dict[int, Placement]) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE federation_auditevent AS e"
                " SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash,"
                " sequenced_at = clock_timestamp()"
                " FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[])"
                " AS v(id, seq, prev_hash, hash)"
                " WHERE e.id = v.id AND e.seq IS NULL",
                [
                    list(placed),
                    [p.seq for p in placed.values()],
                    [p.prev_hash for p in placed.values()],
                    [p.hash for p in placed.values()],
                ],
            )
            written = cursor.rowcount
    else:
        written = sum(
            AuditEvent.objects.filter(pk=pk, seq__isnull=True).update(
                seq=p.seq, prev_hash=p.prev_hash, hash=p.hash, sequenced_at=Now()
            )
            for pk, p in placed.items()
        )
    if written != len(placed):
        raise SequencingConflict(f"placed {written} of {len(placed)} pending events")


def sequence_within_transaction() -> dict[int, Placement]:
    """Inline mode (``AUDIT_SEQUENCING=inline``): sequence every pending event this transaction
    sees, including its own, waiting for the lock and holding it until the caller commits.
    This is the one-lock-per-append design, for deployments without a sequencer (the demo)."""
    placed: dict[int, Placement] = {}
    limit = settings.AUDIT_SEQUENCER_BATCH
    with transaction.atomic(savepoint=False):
        _take_lock(wait=True)
        while batch := _sequence_batch(limit):
            placed.update(batch)
            if len(batch) < limit:
                # A short batch was every pending event this transaction sees, its own included;
                # no other inline writer can add one while this one holds the lock (issue 19: the
                # second, empty batch was two more statements on every audited action).
                break
    return placed


def sequence_pending(*, batch_size: int | None = None, wait: bool = False) -> int:
    """Sequence every event committed before this call, one transaction per batch.

    Returns how many events it placed; 0 when another sequencer holds the lock (that one
    places them), unless ``wait``: then it waits for the lock, so that every event committed
    before the call is placed when it returns (checkpoints). Raises SequencingConflict (the
    batch rolled back) if the rows changed under it.
    """
    limit = batch_size or settings.AUDIT_SEQUENCER_BATCH
    total = 0
    while True:
        with transaction.atomic():
            if not _take_lock(wait=wait, own_transaction=True):
                return total
            placed = _sequence_batch(limit)
        total += len(placed)
        if len(placed) < limit:
            return total


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest: datetime | None

    def lag(self, now: datetime) -> timedelta:
        """How long the oldest pending event has waited for its place (zero when none)."""
        return max(now - self.oldest, timedelta(0)) if self.oldest else timedelta(0)


def backlog() -> Backlog:
    """The pending events a reader sees now (one indexed query)."""
    stats = AuditEvent.objects.filter(seq__isnull=True).aggregate(
        oldest=Min("recorded_at"), pending=Count("id")
    )
    return Backlog(pending=stats["pending"], oldest=stats["oldest"])
