"""The one place audit events are written: an append-only, hash-chained log (SECURITY.md §6).

Each event's hash is SHA-256 over the previous hash and the event's canonical JSON (sorted keys,
UTC times, its sequence number; audit/hashing.py). ``record_event`` inserts the event unsequenced
in the caller's transaction, taking no shared lock; the sequencer (audit/sequencer.py) gives it
its number and hash once it has committed. With ``AUDIT_SEQUENCING=inline`` (no broker: demo,
tests) the writer sequences in its own transaction instead, holding the sequencer lock to commit.

Any string can be audited, including what the service refuses to store elsewhere: PostgreSQL
refuses NUL in text and JSON, and a lone UTF-16 surrogate has no UTF-8 form. Before hashing,
every string (event type, actor, account, target, and every key and value in ``data``) has each
NUL written as the six characters ``\\u0000`` and each lone surrogate as ``\\udXXX`` (its
code point, lowercase hex); then each column is cut to its length. The hash covers exactly what is
stored, so ``audit_verify`` checks escaped events like any other (docs/issuance.md).
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field, Model
from django.db.models.sql import InsertQuery
from django.http import HttpRequest

from federation.audit.hashing import GENESIS_HASH, canonical_record, chain_hash
from federation.audit.sequencer import sequence_within_transaction
from federation.audit.verify import (
    ChainStatus,
    forget_verification,
    iter_events,
    verify_chain,
    verify_chain_incrementally,
)
from federation.models import AuditEvent, User
from federation.observability import context, metrics
from federation.refusals import Refused

__all__ = [
    "GENESIS_HASH",
    "ChainStatus",
    "appends_in_one_statement",
    "canonical_record",
    "chain_hash",
    "forget_verification",
    "iter_events",
    "record_event",
    "record_event_with_row",
    "record_refusal",
    "verify_chain",
    "verify_chain_incrementally",
]

# Keys that must never reach the log, whatever a caller passes (credentials, assertions...).
FORBIDDEN_KEYS = frozenset(
    {
        "secretaccesskey",
        "sessiontoken",
        "accesskeyid",
        "password",
        "client_secret",
        "token",
        "samlresponse",
        "assertion",
        "id_token",
        "access_token",
        "signin_url",
        "signintoken",
    }
)


# The data key naming the HTTP request an event was written in ("request_id" is an access
# request's id in the workflow's events).
HTTP_REQUEST_ID = "http_request_id"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Column lengths of AuditEvent: a value is cut before hashing, so the hash covers what is stored.
_EVENT_TYPE_MAX, _ACTOR_MAX, _ACCOUNT_MAX, _TARGET_MAX = 64, 320, 12, 500


def escape_text(value: str) -> str:
    """``value`` with each NUL and lone surrogate written as a visible escape (``\\u0000``,
    ``\\udXXX``); every other character is kept, so ordinary text is unchanged."""
    if _UNSTORABLE.search(value) is None:
        return value
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def _storable(value: Any) -> Any:
    """A JSON value with every key and string escaped (see escape_text)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(str(key)): _storable(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_storable(child) for child in value]
    return value


def _check_no_secrets(data: Any, path: str = "data") -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if str(key).lower() in FORBIDDEN_KEYS:
                raise ValueError(f"refusing to audit a secret-bearing field: {path}.{key}")
            _check_no_secrets(value, f"{path}.{key}")
    elif isinstance(data, list | tuple):
        for item in data:
            _check_no_secrets(item, path)


def appends_in_one_statement() -> bool:
    """Whether ``record_event`` is one INSERT that reads nothing else back (batched sequencing),
    so it may run inside ``federation.rawsql.pipelined``; inline sequencing reads rowcounts."""
    return settings.AUDIT_SEQUENCING != "inline"


def record_event(
    event_type: str,
    *,
    actor: User | str | None,
    data: Mapping[str, Any] | None = None,
    account_id: str = "",
    target: str = "",
    ip: str | None = None,
    now: datetime,
) -> AuditEvent:
    """Append one event to the log, inside the caller's transaction if there is one.

    The event commits or rolls back with the change it describes. It is returned unsequenced
    (``seq`` None) unless ``AUDIT_SEQUENCING`` is ``inline``; the sequencer places it after commit.
    Inside an HTTP request, ``data`` gains ``http_request_id``: the id of that request's log
    lines and X-Request-ID header. Raises ValueError if ``data`` carries a secret-bearing key.
    """
    event = _prepare(
        event_type, actor=actor, data=data, account_id=account_id, target=target, ip=ip, now=now
    )
    if settings.AUDIT_SEQUENCING != "inline":
        # One INSERT: it joins the caller's transaction, or commits alone in autocommit.
        _insert(event)
        return event
    with transaction.atomic(savepoint=False):
        _insert(event)
        _place(event)
    return event


def record_event_with_row(
    row: Model,
    event_type: str,
    *,
    link: str,
    actor: User | str | None,
    data: Mapping[str, Any] | None = None,
    account_id: str = "",
    target: str = "",
    ip: str | None = None,
    now: datetime,
) -> AuditEvent:
    """Insert the new ``row`` and the event describing it, as ``record_event`` would, in one SQL
    statement on PostgreSQL (issue 19: one round trip fewer on every issuance); ``data`` gains
    ``link``: the row's new primary key, which is set on ``row``."""
    if link in (data or {}):
        raise ValueError(f"the event's data already has {link!r}")
    event = _prepare(
        event_type, actor=actor, data=data, account_id=account_id, target=target, ip=ip, now=now
    )
    with transaction.atomic(savepoint=False):
        if connection.vendor != "postgresql":
            row.save(force_insert=True)
            event.data[escape_text(link)] = row.pk
            _insert(event)
        else:
            _insert_with_row(event, row, escape_text(link))
        if settings.AUDIT_SEQUENCING == "inline":
            _place(event)
    return event


def _place(event: AuditEvent) -> None:
    place = sequence_within_transaction()[event.pk]
    event.seq, event.prev_hash, event.hash = place.seq, place.prev_hash, place.hash


def _prepare(
    event_type: str,
    *,
    actor: User | str | None,
    data: Mapping[str, Any] | None,
    account_id: str,
    target: str,
    ip: str | None,
    now: datetime,
) -> AuditEvent:
    """The event as it will be stored: data checked for secrets, every string escaped and cut."""
    # Lone surrogates survive json.dumps only as \\u escapes (ensure_ascii), so the round trip
    # keeps them for _storable to escape.
    payload = _storable(json.loads(json.dumps(dict(data or {}), default=str)))
    request_id = context.request_id.get()
    if request_id is not None:
        # The HTTP request this happened in: its log lines carry the same id (X-Request-ID).
        payload.setdefault(HTTP_REQUEST_ID, request_id)
    _check_no_secrets(payload)
    if isinstance(actor, User):
        actor_user: User | None = actor
        actor_label = actor.label
    else:
        actor_user = None
        actor_label = actor or "system"
    # Microsecond precision is what the database keeps; hash what will be read back.
    # No savepoint: a failure here must fail the caller's whole change anyway, and the two
    # round trips of SAVEPOINT/RELEASE were a measurable part of every audited action.
    return AuditEvent(
        at=now.astimezone(UTC),
        event_type=escape_text(event_type)[:_EVENT_TYPE_MAX],
        actor=escape_text(actor_label)[:_ACTOR_MAX],
        actor_user=actor_user,
        account_id=escape_text(account_id)[:_ACCOUNT_MAX],
        target=escape_text(target)[:_TARGET_MAX],
        ip=ip,
        data=payload,
    )


# Every audited action pays for this statement: written once, not compiled by the ORM each time
# (that compilation was half of an append's CPU time, bench/audit.py).
_INSERT = (
    "INSERT INTO federation_auditevent"
    " (at, event_type, actor, actor_user_id, account_id, target, ip, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::inet, %s::jsonb) RETURNING id, recorded_at"
)


def _insert(event: AuditEvent) -> None:
    if connection.vendor != "postgresql":
        event.save(force_insert=True)
        return
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, _event_params(event))
        row = cursor.fetchone()
    event.pk, event.recorded_at = row
    event._state.adding, event._state.db = False, connection.alias


def _event_params(event: AuditEvent) -> list[Any]:
    return [
        event.at,
        event.event_type,
        event.actor,
        event.actor_user_id,
        event.account_id,
        event.target,
        event.ip,
        json.dumps(event.data),
    ]


# Per model: the ORM's INSERT of a new row (all concrete fields but the primary key, RETURNING
# the key), built once by the ORM's own compiler, and the fields in the order of its parameters.
_ROW_INSERTS: dict[type[Model], tuple[str, list[Field[Any, Any]]]] = {}


def _row_insert(row: Model) -> tuple[str, list[Any]]:
    """The INSERT of ``row`` as ``Model.save`` would write it, and its parameters. Compiling an
    INSERT through the ORM costs more CPU than the statement itself, so the SQL is compiled
    once per model; each row's values are prepared as the compiler prepares them (``pre_save``
    then ``get_db_prep_save``)."""
    model = type(row)
    cached = _ROW_INSERTS.get(model)
    if cached is None:
        meta = row._meta
        fields = [f for f in meta.local_concrete_fields if not f.primary_key]
        query = InsertQuery(model)
        query.insert_values(fields, [row])
        compiler = query.get_compiler(using=connection.alias)
        compiler.returning_fields = [meta.pk]
        ((sql, params),) = compiler.as_sql()
        if len(params) != len(fields):  # a field with a placeholder of its own: no cache
            return sql, list(params)
        cached = _ROW_INSERTS[model] = (sql, fields)
    sql, fields = cached
    return sql, [f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields]


def _insert_with_row(event: AuditEvent, row: Model, link: str) -> None:
    """``row``'s INSERT (as the ORM writes it) and the event's, in one statement: the event's
    data gains ``link``, the row's new id, in the database."""
    row_sql, row_params = _row_insert(row)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new_row AS ({row_sql}) "  # noqa: S608 (the ORM's own INSERT)
            "INSERT INTO federation_auditevent"
            " (at, event_type, actor, actor_user_id, account_id, target, ip, data)"
            " SELECT %s, %s, %s, %s, %s, %s, %s::inet,"
            " %s::jsonb || jsonb_build_object(%s::text, new_row.id) FROM new_row"
            " RETURNING id, recorded_at, (data ->> %s::text)::bigint",
            [*row_params, *_event_params(event), link, link],
        )
        fetched = cursor.fetchone()
    event.pk, event.recorded_at, row.pk = fetched
    event.data[link] = row.pk
    event._state.adding, event._state.db = False, connection.alias
    row._state.adding, row._state.db = False, connection.alias


def record_refusal(
    event_type: str,
    refusal: Refused,
    *,
    actor: User | str | None,
    data: Mapping[str, Any] | None = None,
    account_id: str = "",
    target: str = "",
    ip: str | None = None,
    now: datetime,
) -> AuditEvent:
    """Audit a refusal (as ``record_event``, inside the caller's transaction if any).

    Writes ``{**data, **refusal.detail, "reason": code, "message": message}``: the standard keys
    come last, so no caller data or refusal detail can overwrite the audited code.
    """
    event = record_event(
        event_type,
        actor=actor,
        account_id=account_id,
        target=target,
        ip=ip,
        now=now,
        data={
            **(data or {}),
            **refusal.detail,
            "reason": refusal.code,
            "message": refusal.message,
        },
    )
    metrics.record_refusal(event=event_type, reason=refusal.code)
    return event


def request_ip(request: HttpRequest) -> str | None:
    """The client address for audit. Only REMOTE_ADDR: forwarded headers are client-controlled
    unless a trusted proxy rewrites them, and the deployment's proxy sets REMOTE_ADDR."""
    value = request.META.get("REMOTE_ADDR")
    return str(value) if value else None


def cli_actor() -> str:
    """The audit actor of a management command: the operating-system user running it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "cli:unknown"
