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

import orjson

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
    return record_text(seq, at_iso, event_type, actor, account_id, target, ip, _data(data))


def record_text(
    seq: int,
    at_iso: str,
    event_type: str,
    actor: str,
    account_id: str,
    target: str,
    ip: str | None,
    data_json: str,
) -> bytes:
    """The canonical record around ``data`` already encoded as canonical JSON."""
    return (
        f'{{"account_id":{_str(account_id)},"actor":{_str(actor)},"at":"{at_iso}",'
        f'"data":{data_json},"event_type":{_str(event_type)},'
        f'"ip":{"null" if ip is None else _str(ip)},"seq":{seq},"target":{_str(target)}}}'
    ).encode()


def fast_data_json(text: str) -> str | None:
    """``data`` (as PostgreSQL prints a jsonb) re-encoded as canonical JSON by orjson, or None
    where orjson cannot read or write it. orjson and the standard library agree on almost every
    document but not on all (exponent spelling, integers past 64 bits), so a caller that gets a
    hash mismatch from this form must retry with the standard library before calling it bad."""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return None


def canonical_data_json(text: str) -> str:
    """``data`` re-encoded exactly as ``canonical_record`` encodes it (the standard library)."""
    return _data(json.loads(text))


def chain_hash(prev_hash: str, record: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + record).hexdigest()
