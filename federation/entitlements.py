"""Which (account, role) a user may use now: the one place entitlements are computed (SPEC §2).

An entitlement is standing mappings plus active grants, plus the eligible rows a user may request.
The lookup is by the user's groups through the ``group`` index (``= ANY(%s)`` on PostgreSQL,
never a scan); rows are expanded to accounts through a per-process catalog of accounts and roles.

Mapping-derived results are memoised per process under (mapping version, group set). Every
mapping change goes through ``federation.mappings``, which writes a new version, so a change
anywhere invalidates every process's cache on its next call. Grants are per user and
time-dependent and are never cached.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from .models import Access, Account, AccountRole, Environment, LogicalRole

ACCESS_RANK = {"grant": 3, "standing": 2, "eligible": 1}


@dataclass(frozen=True, slots=True)
class Entitlement:
    account_id: str
    account_alias: str
    business_unit: str
    environment: str
    role: str
    role_arn: str
    access: str  # "standing", "grant" (both usable now) or "eligible" (may be requested)
    via: tuple[str, ...]  # the groups (or grant) that give it: the "why"
    max_session: timedelta
    privileged: bool
    max_grant: timedelta | None = None
    grant_id: int | None = None
    request_id: int | None = None
    grant_ends_at: datetime | None = None

    @property
    def usable(self) -> bool:
        return self.access in ("standing", "grant")

    @property
    def key(self) -> tuple[str, str]:
        return (self.account_id, self.role)


@dataclass(frozen=True, slots=True)
class _AccountInfo:
    pk: int
    account_id: str
    alias: str
    business_unit: str
    environment: str


@dataclass(frozen=True, slots=True)
class _RoleInfo:
    name: str
    max_session: timedelta
    privileged: bool


@dataclass
class _Catalog:
    """Accounts and roles as plain tuples, loaded once per mapping version per process."""

    version: int
    by_bu: dict[int, list[_AccountInfo]] = field(default_factory=dict)
    by_bu_env: dict[tuple[int, str], list[_AccountInfo]] = field(default_factory=dict)
    by_account_id: dict[str, tuple[int, _AccountInfo]] = field(default_factory=dict)
    by_pk: dict[int, _AccountInfo] = field(default_factory=dict)
    roles: dict[int, _RoleInfo] = field(default_factory=dict)
    overrides: dict[tuple[int, int], tuple[str, timedelta | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Row:
    """A mapping row expanded to one (account, role): the unit merged across groups."""

    account: _AccountInfo
    role_id: int
    access: str
    group: str
    max_grant: timedelta | None


_lock = threading.Lock()
_catalog: _Catalog | None = None
_memo: OrderedDict[tuple[int, str], dict[tuple[int, int], list[_Row]]] = OrderedDict()
_MEMO_SIZE = 4096


def clear_cache() -> None:
    """Forget every memoised result in this process (tests, and after out-of-band edits)."""
    global _catalog
    with _lock:
        _catalog = None
        _memo.clear()


def _load_catalog(version: int) -> _Catalog:
    catalog = _Catalog(version=version)
    for pk, account_id, alias, bu_id, bu_slug, env in Account.objects.values_list(
        "pk", "account_id", "alias", "business_unit_id", "business_unit__slug", "environment"
    ):
        info = _AccountInfo(pk, account_id, alias, bu_slug, env)
        catalog.by_bu.setdefault(bu_id, []).append(info)
        catalog.by_bu_env.setdefault((bu_id, env), []).append(info)
        catalog.by_account_id[account_id] = (bu_id, info)
        catalog.by_pk[pk] = info
    for pk, name, max_session, privileged in LogicalRole.objects.values_list(
        "pk", "name", "max_session", "privileged"
    ):
        catalog.roles[pk] = _RoleInfo(name, max_session, privileged)
    for account_pk, role_pk, arn, override_max in AccountRole.objects.values_list(
        "account_id", "role_id", "role_arn", "max_session"
    ):
        catalog.overrides[(account_pk, role_pk)] = (arn, override_max)
    return catalog


def _get_catalog(version: int) -> _Catalog:
    global _catalog
    current = _catalog
    if current is not None and current.version == version:
        return current
    fresh = _load_catalog(version)
    with _lock:
        _catalog = fresh
    return fresh


def _groups_key(groups: Iterable[str]) -> tuple[list[str], str]:
    unique = sorted(set(groups))
    digest = hashlib.blake2b("\x00".join(unique).encode(), digest_size=16).hexdigest()
    return unique, digest


def _fetch_mapping_rows(groups: Sequence[str]) -> list[tuple[Any, ...]]:
    columns = (
        'm."group", m.role_id, m.business_unit_id, m.environments, m.accounts, m.access, '
        "m.max_grant"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array parameter: a 1,000-literal IN list makes PostgreSQL pick a seq scan.
            cursor.execute(
                f'SELECT {columns} FROM federation_groupmapping m WHERE m."group" = ANY(%s)',  # noqa: S608
                [list(groups)],
            )
            return list(cursor.fetchall())
        rows: list[tuple[Any, ...]] = []
        # SQLite (demo only) caps bound parameters; chunk the IN list.
        for start in range(0, len(groups), 500):
            chunk = list(groups[start : start + 500])
            marks = ",".join(["%s"] * len(chunk))
            cursor.execute(
                f'SELECT {columns} FROM federation_groupmapping m WHERE m."group" IN ({marks})',  # noqa: S608
                chunk,
            )
            rows.extend(cursor.fetchall())
        return rows


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):  # SQLite hands JSON back as text through a raw cursor
        parsed = json.loads(value)
        return [str(v) for v in parsed]
    return [str(v) for v in value or []]


def _as_duration(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    # SQLite stores DurationField as microseconds.
    return timedelta(microseconds=int(value))


def _expand(catalog: _Catalog, rows: list[tuple[Any, ...]]) -> dict[tuple[int, int], list[_Row]]:
    found: dict[tuple[int, int], list[_Row]] = {}
    for group, role_id, bu_id, environments, accounts, access, max_grant in rows:
        envs = _as_list(environments)
        account_ids = _as_list(accounts)
        grant_len = _as_duration(max_grant)
        targets: list[_AccountInfo]
        if account_ids:
            targets = []
            for account_id in account_ids:
                entry = catalog.by_account_id.get(account_id)
                # Business-unit isolation: an account outside the row's BU is never reachable,
                # even if a row names it.
                if entry is None or entry[0] != bu_id:
                    continue
                if envs and entry[1].environment not in envs:
                    continue
                targets.append(entry[1])
        elif envs:
            targets = [a for env in envs for a in catalog.by_bu_env.get((bu_id, env), ())]
        else:
            targets = catalog.by_bu.get(bu_id, [])
        for account in targets:
            found.setdefault((account.pk, role_id), []).append(
                _Row(account, role_id, access, group, grant_len)
            )
    return found


def _current_version_and_grants(
    user_id: int | None, now: datetime
) -> tuple[int, list[tuple[Any, ...]]]:
    """One round trip: the mapping version and the user's active grants."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT MAX(number) FROM federation_mappingversion), "
            "g.id, g.account_id, g.role_id, g.ends_at, g.request_id "
            "FROM (SELECT 1 AS one) o LEFT JOIN access_requests_grant g "
            "ON g.user_id = %s AND g.state = 'active' AND g.starts_at <= %s AND g.ends_at > %s",
            [user_id or 0, now, now],
        )
        result = cursor.fetchall()
    version = int(result[0][0] or 0)
    grants = [row[1:] for row in result if row[1] is not None]
    return version, grants


def _mapping_entitlements(
    groups: Iterable[str], version: int
) -> tuple[_Catalog, dict[tuple[int, int], list[_Row]]]:
    catalog = _get_catalog(version)
    unique, digest = _groups_key(groups)
    key = (version, digest)
    with _lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
    if hit is not None:
        return catalog, hit
    found = _expand(catalog, _fetch_mapping_rows(unique)) if unique else {}
    with _lock:
        _memo[key] = found
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return catalog, found


def _build(
    catalog: _Catalog, account: _AccountInfo, role_id: int, rows: list[_Row]
) -> Entitlement | None:
    role = catalog.roles.get(role_id)
    if role is None:
        return None
    standing = [r for r in rows if r.access == Access.STANDING]
    chosen = standing or rows
    access = "standing" if standing else "eligible"
    arn, override_max = catalog.overrides.get((account.pk, role_id), ("", None))
    max_grants = [r.max_grant for r in chosen if r.max_grant is not None]
    return Entitlement(
        account_id=account.account_id,
        account_alias=account.alias,
        business_unit=account.business_unit,
        environment=account.environment,
        role=role.name,
        role_arn=arn or f"arn:aws:iam::{account.account_id}:role/{role.name}",
        access=access,
        via=tuple(sorted({r.group for r in chosen})),
        max_session=override_max or role.max_session,
        privileged=role.privileged,
        max_grant=max(max_grants) if max_grants and access == "eligible" else None,
    )


ENV_ORDER = {Environment.DEV: 0, Environment.TEST: 1, Environment.PROD: 2}


def resolve_entitlements(
    groups: Iterable[str], *, now: datetime, user_id: int | None = None
) -> list[Entitlement]:
    """Everything the holder of ``groups`` (and, with ``user_id``, their grants) may use or request.

    Guarantees: a mapping row only ever yields accounts of its own business unit; a grant counts
    only while it is active at ``now`` *and* the user is still eligible for it through a group
    they hold now. Sorted by business unit, environment, account alias and role.
    """
    version, grant_rows = _current_version_and_grants(user_id, now)
    catalog, found = _mapping_entitlements(groups, version)
    result: dict[tuple[int, int], Entitlement] = {}
    for (account_pk, role_id), rows in found.items():
        built = _build(catalog, catalog.by_pk[account_pk], role_id, rows)
        if built is not None:
            result[(account_pk, role_id)] = built
    for grant_id, account_pk, role_id, ends_at, request_id in grant_rows:
        base = result.get((account_pk, role_id))
        if base is None or base.access == "standing":
            # No longer eligible (groups changed) or already standing: the grant adds nothing.
            continue
        result[(account_pk, role_id)] = Entitlement(
            account_id=base.account_id,
            account_alias=base.account_alias,
            business_unit=base.business_unit,
            environment=base.environment,
            role=base.role,
            role_arn=base.role_arn,
            access="grant",
            via=(f"grant #{grant_id}", *base.via),
            max_session=base.max_session,
            privileged=base.privileged,
            max_grant=base.max_grant,
            grant_id=int(grant_id),
            request_id=int(request_id),
            grant_ends_at=_aware(ends_at),
        )
    return sorted(
        result.values(),
        key=lambda e: (
            e.business_unit,
            ENV_ORDER.get(e.environment, 9),  # type: ignore[call-overload]
            e.account_alias,
            e.role,
        ),
    )


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        parsed = parse_datetime(value)
        assert parsed is not None
        value = parsed
    return make_aware(value) if is_naive(value) else value


def find_entitlement(
    groups: Iterable[str], account_id: str, role: str, *, now: datetime, user_id: int | None = None
) -> Entitlement | None:
    """The entitlement for one (account, role), or None: what issuance and requests check."""
    for entitlement in resolve_entitlements(groups, now=now, user_id=user_id):
        if entitlement.account_id == account_id and entitlement.role == role:
            return entitlement
    return None
