"""What an audit event's hash covers: its canonical JSON, chained to the previous hash.

Each event's hash is SHA-256 over the previous event's hash (ASCII hex) and the event's canonical
JSON (sorted keys, no spaces, UTF-8, UTC time with microseconds, its sequence number).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
# The event time as canonical_record writes it (UTC, microseconds), formatted by PostgreSQL.
AT_ISO_SQL = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"


def canonical_record(
    *,
    seq: int,
    at: datetime,
    event_type: str,
    actor: str,
    account_id: str,
    target: str,
    ip: str | None,
    data: Mapping[str, Any],
) -> bytes:
    record = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "event_type": event_type,
        "actor": actor,
        "account_id": account_id,
        "target": target,
        "ip": ip,
        "data": data,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_str = json.encoder.encode_basestring  # one JSON string, non-ASCII kept as ensure_ascii=False
_data = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_record_text(
    *,
    seq: int,
    at_iso: str,
    event_type: str,
    actor: str,
    account_id: str,
    target: str,
    ip: str | None,
    data: Mapping[str, Any],
) -> bytes:
    """``canonical_record`` from the time already written as its ISO string (the verifier reads
    it so from PostgreSQL): the same bytes, built without one dict and one sort per event."""
    return (
        f'{{"account_id":{_str(account_id)},"actor":{_str(actor)},"at":"{at_iso}",'
        f'"data":{_data(data)},"event_type":{_str(event_type)},'
        f'"ip":{"null" if ip is None else _str(ip)},"seq":{seq},"target":{_str(target)}}}'
    ).encode()


def chain_hash(prev_hash: str, record: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + record).hexdigest()
