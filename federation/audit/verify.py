"""Checking the audit hash chain: the full check (``audit_verify``) and the page's incremental one.

Fast enough for millions of events: rows stream from one COPY as plain values (no model
instances; JSON arrives as text and is re-encoded by orjson, with the writer's own encoder as the
fallback), and each hash is recomputed from the stored previous hash, so ranges of the chain are
independent and ``jobs`` processes can check them in parallel; the links between ranges are
checked at the end.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import connection, connections

from federation.audit.hashing import (
    AT_ISO_SQL,
    GENESIS_HASH,
    canonical_data_json,
    chain_hash,
    fast_data_json,
    record_text,
)
from federation.models import AuditChainHead, AuditEvent

PAGE = 20_000  # events per ORM page where COPY is not available (SQLite: the demo)
_COPY = (
    f"COPY (SELECT seq, {AT_ISO_SQL}, event_type, actor, account_id, target, ip, data::text,"  # noqa: S608
    " prev_hash, hash FROM federation_auditevent WHERE seq > {after} AND seq <= {end}"
    " ORDER BY seq) TO STDOUT"
)
_COPY_TYPES = ["int8", "text", "text", "text", "text", "text", "text", "text", "text", "text"]


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    verified_up_to: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_hash: str = ""


def iter_events(batch: int = 2000, *, after: int = 0) -> Iterator[AuditEvent]:
    """Placed events in chain order, after sequence number ``after``."""
    last = after
    while True:
        rows = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:batch])
        if not rows:
            return
        yield from rows
        last = rows[-1].seq or last  # seq__gt never matches NULL: every row here is placed


@dataclass(frozen=True)
class _Range:
    """What one range of the chain (after ``start``, up to ``end``) looked like."""

    start: int
    end: int
    first_prev_hash: str | None = None  # the stored prev_hash of event start + 1
    last_seq: int = 0
    last_hash: str = ""
    first_bad_seq: int | None = None
    problem: str = ""


def _rows(after: int, end: int) -> Generator[tuple[Any, ...], None, None]:
    """Placed events after ``after`` up to ``end`` in chain order, as plain values (time as its
    ISO string, data as JSON text). PostgreSQL streams them with one COPY (about three times
    the rate of paged SELECTs); elsewhere they come in ORM pages."""
    if connection.vendor == "postgresql":
        sql = _COPY.format(after=int(after), end=int(end))
        with connection.cursor() as cursor, cursor.copy(sql) as copy:
            copy.set_types(_COPY_TYPES)
            yield from copy.rows()
        return
    while True:
        page = list(AuditEvent.objects.filter(seq__gt=after, seq__lte=end).order_by("seq")[:PAGE])
        if not page:
            return
        for e in page:
            at = e.at.astimezone(UTC).isoformat(timespec="microseconds")
            yield (e.seq, at, e.event_type, e.actor, e.account_id, e.target, e.ip,
                   json.dumps(e.data), e.prev_hash, e.hash)  # fmt: skip
        after = page[-1].seq or after


def _check_range(start: int, end: int) -> _Range:
    """Recompute each event's hash from its stored predecessor hash, and the links inside."""
    expected, prev, first_prev = start + 1, None, None
    rows = _rows(start, end)
    try:
        for seq, at, event_type, actor, account_id, target, ip, data, prev_hash, digest in rows:
            bad = ""
            if seq != expected:
                seq, bad = expected, "missing event(s)"
            elif prev is not None and prev_hash != prev:
                bad = "previous hash does not match"
            elif not _hash_matches(
                digest, prev_hash, seq, at, event_type, actor, account_id, target, ip, data
            ):
                bad = "content does not match its hash"
            if bad:
                return _Range(start, end, first_prev, expected - 1, prev or "", seq, bad)
            if first_prev is None:
                first_prev = prev_hash
            prev, expected = digest, expected + 1
    finally:
        rows.close()  # stops a COPY still streaming after the first bad event
    return _Range(start, end, first_prev, expected - 1, prev or "")


def _hash_matches(
    digest: str,
    prev_hash: str,
    seq: int,
    at: str,
    event_type: str,
    actor: str,
    account_id: str,
    target: str,
    ip: str | None,
    data: str,
) -> bool:
    """Does the stored hash cover this row? orjson's encoding first (fast); on a mismatch the
    standard library's, which is what the writer used, so only a real difference fails."""
    for encode in (fast_data_json, canonical_data_json):
        data_json = encode(data)
        if data_json is not None and digest == chain_hash(
            prev_hash, record_text(seq, at, event_type, actor, account_id, target, ip, data_json)
        ):
            return True
    return False


def _check_range_in_child(bounds: tuple[int, int]) -> _Range:
    connections.close_all()  # a fresh connection of our own, never the parent's socket
    try:
        return _check_range(*bounds)
    finally:
        connections.close_all()


def verify_chain(*, after: tuple[int, str] | None = None, jobs: int = 1) -> ChainStatus:
    """Recompute every hash from the genesis; report the first event that does not match.

    Catches edited, deleted and reordered rows, and a head that disagrees with the last row.
    ``after=(seq, hash)`` resumes from an already verified event (incremental checks); only the
    full check from the genesis covers rows before it. ``jobs`` > 1 checks ranges in parallel
    processes (PostgreSQL, outside a transaction); the result is the same.
    """
    start, prev_hash = (0, GENESIS_HASH) if after is None else after
    head = AuditChainHead.objects.filter(pk=1).first()
    stored = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    end = max(head.seq if head else 0, (stored.seq or 0) if stored else 0)
    # Other processes cannot see this transaction's rows, and closing its connection to fork
    # would end it: inside a transaction (or on SQLite) the check runs in this process.
    parallel = connection.vendor == "postgresql" and not connection.in_atomic_block
    ranges = _split(start, end, jobs if parallel else 1)
    if len(ranges) == 1:
        checked = [_check_range(*ranges[0])]
    else:
        connections.close_all()
        with mp.get_context("fork").Pool(len(ranges)) as pool:
            checked = pool.map(_check_range_in_child, ranges)
    for part in checked:
        # The first event of each range must link to the last hash of the one before.
        if part.first_prev_hash is not None and part.first_prev_hash != prev_hash:
            bad = part.start + 1
            return ChainStatus(False, bad - 1, bad, "previous hash does not match")
        if part.first_bad_seq is not None:
            return ChainStatus(False, part.last_seq, part.first_bad_seq, part.problem)
        if part.last_seq != part.end:
            missing = part.last_seq + 1
            if head is not None and part is checked[-1] and part.last_seq == _stored_end(stored):
                problem = "events after the last stored one are missing"
            else:
                problem = "missing event(s)"
            return ChainStatus(False, part.last_seq, missing, problem)
        if part.last_seq > part.start:
            prev_hash = part.last_hash
    if head is not None and (head.seq != end or head.hash != prev_hash):
        return ChainStatus(False, end, end + 1, "events after the last stored one are missing")
    return ChainStatus(True, end, head_hash=prev_hash)


def _stored_end(stored: AuditEvent | None) -> int:
    return (stored.seq or 0) if stored else 0


def _split(start: int, end: int, jobs: int) -> list[tuple[int, int]]:
    size = max((end - start + jobs - 1) // max(jobs, 1), 1)
    bounds = list(range(start, end, size)) or [start]
    return [(low, min(low + size, end)) for low in bounds]


_verified: tuple[int, str] | None = None


def verify_chain_incrementally() -> ChainStatus:
    """Verify only the events appended since this process last verified the chain (the audit
    page's status line). The full check is ``manage.py audit_verify``, run on a schedule."""
    global _verified
    status = verify_chain(after=_verified)
    if status.ok:
        _verified = (status.verified_up_to, status.head_hash) if status.verified_up_to else None
    return status


def forget_verification() -> None:
    """Drop this process's incremental checkpoint (tests; after restoring a database)."""
    global _verified
    _verified = None
