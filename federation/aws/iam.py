"""IAM calls the broker makes with its management access: today, per-person session revocation.

The console's "Revoke active sessions" denies *every* session of a role issued before a moment
(``DateLessThan aws:TokenIssueTime``). We narrow that to one person by adding
``StringEquals aws:SourceIdentity``: SourceIdentity is set at issuance, cannot be changed by the
session and survives role chaining (SECURITY.md §4). One inline policy per role holds one Deny
statement per revoked person; a statement is kept until every session it can match has expired
(the issue time plus the longest possible session), then garbage-collected, because inline role
policies share a 10,240-character budget per role.

This module decides nothing: it translates "deny this person's sessions issued before T" into
IAM calls and reports failures as ``IamCallFailed``. boto3 finds credentials and endpoints
through its standard chain (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_IAM`` included); the
region comes from settings (``federation.aws.sts.home_region``), and the cross-account
management role is assumed through ``federation.aws.sts`` like every other STS call.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from federation.aws import sts
from federation.models import MAX_SESSION

POLICY_NAME = "FedAccessRevokedSessions"
SID_PREFIX = "FedAccessRevoke"
# IAM's limit for all inline policies of one role together (non-whitespace characters).
INLINE_POLICY_BUDGET = 10_240

_client_lock = threading.Lock()
_clients: dict[tuple[str, ...], Any] = {}
# Per target account, when IAM_MANAGEMENT_ROLE_NAME is set: (client, credentials expiry).
_assumed: dict[tuple[str, ...], tuple[Any, datetime]] = {}
# The control loop's reads and writes (iam_roles.py) retry throttling harder: a rollout
# touches many roles in a burst.
PROVISIONING_SESSION_NAME = "fedaccess-provisioning"
_PROVISIONING_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5)
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
# A management session is reused until this long before its credentials expire.
_REFRESH_MARGIN = timedelta(minutes=5)
MANAGEMENT_SESSION_NAME = "fedaccess-revocation"


class IamCallFailed(Exception):
    """An IAM call failed or its result could not be confirmed; safe to retry."""


@dataclass(frozen=True)
class RevocationStatement:
    source_identity: str
    issued_before: datetime


def _cache_key(*parts: str) -> tuple[str, ...]:
    # boto3 reads AWS_ENDPOINT_URL* when it builds a client: key on them so a change (tests,
    # the demo) gets a fresh client instead of one pointing at the old place.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_IAM") or os.environ.get("AWS_ENDPOINT_URL", "")
    return (endpoint, sts.home_region(), *parts)


def _base_client() -> Any:
    """The broker's own IAM client, reused across calls (clients are thread-safe). IAM is
    global: the region only picks the partition and signing region, from settings."""
    key = _cache_key()
    with _client_lock:
        client = _clients.get(key)
        if client is None:
            client = boto3.session.Session().client(
                "iam", region_name=sts.home_region(), config=_CONFIG
            )
            _clients[key] = client
        return client


def _client(role_arn: str) -> Any:
    """The IAM client that can act on ``role_arn``: the broker's own credentials, or, with
    ``IAM_MANAGEMENT_ROLE_NAME`` set, that role assumed in the role's account (cross-account
    management access) through ``federation.aws.sts``, with its regional failover, and reused
    until shortly before its credentials expire."""
    return _account_client(role_arn.split(":")[4], MANAGEMENT_SESSION_NAME)


def _account_client(account_id: str, session_name: str) -> Any:
    management_role = settings.IAM_MANAGEMENT_ROLE_NAME
    if not management_role:
        return _base_client()
    key = _cache_key(account_id, management_role, session_name)
    # The wall clock, not a caller's ``now``: AWS judges these credentials by real time, and a
    # caller's ``now`` may be a moment in a test or a replayed schedule.
    wall_clock = datetime.now(UTC)
    with _client_lock:
        cached = _assumed.get(key)
    if cached is not None and cached[1] - _REFRESH_MARGIN > wall_clock:
        return cached[0]
    try:
        session = sts.assume_management_role(
            f"arn:aws:iam::{account_id}:role/{management_role}",
            session_name=session_name,
        )
    except sts.StsError as exc:
        answer = f"{exc.code}: {exc.message}" if isinstance(exc, sts.StsRefused) else exc.message
        raise IamCallFailed(f"cannot assume {management_role} in {account_id}: {answer}") from exc
    credentials = session.credentials
    config = _PROVISIONING_CONFIG if session_name == PROVISIONING_SESSION_NAME else _CONFIG
    with _client_lock:
        # One boto3 Session for every account's client: a new Session loads botocore's data
        # files again (tens of milliseconds, under the GIL); a client from a warm one does not.
        # Sessions are not thread-safe, hence the lock.
        client = _shared_session().client(
            "iam",
            region_name=sts.home_region(),
            config=config,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )
        _assumed[key] = (client, credentials.expiration)
    return client


_session: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session


def reset_clients() -> None:
    """Forget cached clients and management sessions (tests, credential rotation)."""
    with _client_lock:
        _clients.clear()
        _assumed.clear()


def role_name_from_arn(role_arn: str) -> str:
    """``arn:aws:iam::123456789012:role/path/name`` -> ``name`` (IAM APIs take the bare name)."""
    prefix, _, resource = role_arn.partition(":role/")
    if not prefix.startswith("arn:aws") or not resource:
        raise ValueError(f"not an IAM role ARN: {role_arn!r}")
    return resource.rsplit("/", 1)[-1]


def _sid(source_identity: str) -> str:
    # Sids allow only [A-Za-z0-9]; a digest keeps one statement per person, whatever the name.
    return SID_PREFIX + hashlib.sha256(source_identity.encode()).hexdigest()[:24]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _statement(entry: RevocationStatement) -> dict[str, Any]:
    return {
        "Sid": _sid(entry.source_identity),
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceIdentity": entry.source_identity},
            "DateLessThan": {"aws:TokenIssueTime": _iso(entry.issued_before)},
        },
    }


def _parse(statement: Any) -> RevocationStatement | None:
    """Our statements only; anything else in the policy is left alone and kept as is."""
    try:
        if not str(statement.get("Sid", "")).startswith(SID_PREFIX):
            return None
        condition = statement["Condition"]
        identity = condition["StringEquals"]["aws:SourceIdentity"]
        issued = condition["DateLessThan"]["aws:TokenIssueTime"]
        moment = datetime.strptime(issued, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return RevocationStatement(str(identity), moment)


def _read_policy(role_arn: str) -> dict[str, Any] | None:
    role_name = role_name_from_arn(role_arn)
    client = _client(role_arn)
    try:
        response = client.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            # Either the role or the policy is missing; tell them apart so a missing role fails.
            try:
                client.get_role(RoleName=role_name)
            except (ClientError, BotoCoreError) as role_exc:
                raise IamCallFailed(f"role {role_name!r} cannot be read: {role_exc}") from role_exc
            return None
        raise IamCallFailed(f"reading {POLICY_NAME} on {role_name!r} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise IamCallFailed(f"reading {POLICY_NAME} on {role_name!r} failed: {exc}") from exc
    document = response["PolicyDocument"]
    if isinstance(document, str):  # the API returns it URL-encoded; boto3 usually decodes it
        document = json.loads(unquote(document))
    return dict(document)


def list_revocations(role_arn: str) -> list[RevocationStatement]:
    """The per-person revocations currently on the role (empty if there is no policy)."""
    document = _read_policy(role_arn)
    if document is None:
        return []
    parsed = (_parse(s) for s in _statements(document))
    return [entry for entry in parsed if entry is not None]


def _statements(document: dict[str, Any]) -> list[Any]:
    statements = document.get("Statement", [])
    return list(statements) if isinstance(statements, list) else [statements]


def _write(role_arn: str, document: dict[str, Any] | None) -> None:
    role_name = role_name_from_arn(role_arn)
    client = _client(role_arn)
    try:
        if document is None:
            client.delete_role_policy(RoleName=role_name, PolicyName=POLICY_NAME)
            return
        text = json.dumps(document, separators=(",", ":"))
        if len(text) > INLINE_POLICY_BUDGET:
            raise IamCallFailed(
                f"the revocation policy on {role_name!r} would be {len(text)} characters, over "
                f"IAM's {INLINE_POLICY_BUDGET}; too many people revoked within one session length"
            )
        client.put_role_policy(RoleName=role_name, PolicyName=POLICY_NAME, PolicyDocument=text)
    except (ClientError, BotoCoreError) as exc:
        raise IamCallFailed(f"writing {POLICY_NAME} on {role_name!r} failed: {exc}") from exc


def _merge(
    document: dict[str, Any] | None,
    additions: list[RevocationStatement],
    *,
    now: datetime,
    max_session: timedelta,
) -> dict[str, Any] | None:
    foreign: list[Any] = []
    ours: dict[str, RevocationStatement] = {}
    for statement in _statements(document or {}):
        entry = _parse(statement)
        if entry is None:
            foreign.append(statement)
        else:
            ours[entry.source_identity] = entry
    for entry in additions:
        known = ours.get(entry.source_identity)
        # The later moment denies a superset of the earlier one: keep one statement per person.
        if known is None or known.issued_before < entry.issued_before:
            ours[entry.source_identity] = entry
    # A session issued before T lives at most max_session: past T + max_session nothing matches.
    alive = [e for e in ours.values() if e.issued_before + max_session > now]
    statements = foreign + [_statement(e) for e in sorted(alive, key=lambda e: e.source_identity)]
    if not statements:
        return None
    return {"Version": "2012-10-17", "Statement": statements}


def put_revocation_policy(
    role_arn: str,
    *,
    source_identity: str,
    issued_before: datetime,
    now: datetime,
    max_session: timedelta = MAX_SESSION,
) -> list[RevocationStatement]:
    """Deny every session of ``role_arn`` with this SourceIdentity issued before ``issued_before``.

    Merges into the role's inline policy (one statement per person, the later moment wins) and
    drops statements older than ``max_session``. Reads the policy back and raises
    ``IamCallFailed`` unless the deny is in place. Callers serialise calls per role: IAM has no
    conditional write, so two concurrent read-modify-writes could drop a statement.
    """
    if not 2 <= len(source_identity) <= 64:
        # Issuance (federation/aws/names.py: session_name_for) stamps 2-64 characters.
        raise ValueError(f"not a SourceIdentity STS could have set: {source_identity!r}")
    role_name = role_name_from_arn(role_arn)
    wanted = RevocationStatement(source_identity, issued_before.replace(microsecond=0))
    if wanted.issued_before < issued_before:
        # Rounding down would leave sessions issued in the same second alive: round up.
        wanted = RevocationStatement(source_identity, wanted.issued_before + timedelta(seconds=1))
    document = _merge(_read_policy(role_arn), [wanted], now=now, max_session=max_session)
    _write(role_arn, document)
    current = list_revocations(role_arn)
    if not any(
        e.source_identity == source_identity and e.issued_before >= wanted.issued_before
        for e in current
    ):
        raise IamCallFailed(f"the deny for {source_identity!r} on {role_name!r} did not persist")
    return current


def collect_expired_revocations(
    role_arn: str, *, now: datetime, max_session: timedelta = MAX_SESSION
) -> int:
    """Remove statements no live session can match any more; returns how many were removed.

    Deletes the policy when nothing is left. Same per-role serialisation rule as above.
    """
    document = _read_policy(role_arn)
    if document is None:
        return 0
    before = sum(1 for s in _statements(document) if _parse(s) is not None)
    merged = _merge(document, [], now=now, max_session=max_session)
    after = sum(1 for s in _statements(merged or {}) if _parse(s) is not None)
    if after != before:
        _write(role_arn, merged)
    return before - after
