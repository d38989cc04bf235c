"""Which (account, role) a user may use now: the one place entitlements are computed (SPEC §2).

An entitlement is standing mappings plus active grants, plus the eligible rows a user may request.
The lookup is by the user's groups through the ``group`` index (``= ANY(%s)`` on PostgreSQL,
never a scan: ``federation.entitlements.queries``); rows are expanded to accounts through a
per-process catalog of accounts and roles.

Mapping-derived results are memoised per process under (mapping version, group set). Every
mapping change goes through ``federation.mappings``, which writes a new version, so a change
anywhere invalidates every process's cache on its next call. Grants are per user and
time-dependent and are never cached.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from federation.entitlements.queries import current_version_and_grants, fetch_mapping_rows
from federation.entitlements.scope import accounts_reached
from federation.models import (
    ENV_ORDER,
    Access,
    Account,
    AccountRole,
    EntitlementAccess,
    LogicalRole,
)


class Entitlement(NamedTuple):
    """One (account, role) and why. A NamedTuple rather than a frozen dataclass: a user in many
    groups resolves to thousands of these, and tuple construction is several times cheaper."""

    account_id: str
    account_alias: str
    business_unit: str
    environment: str
    role: str
    role_arn: str
    access: EntitlementAccess
    via: tuple[str, ...]  # the groups (or grant) that give it: the "why"
    max_session: timedelta
    privileged: bool
    max_grant: timedelta | None = None
    grant_id: int | None = None
    request_id: int | None = None
    grant_ends_at: datetime | None = None
    region: str = "us-east-1"  # the account's console region
    # Step-up (SPEC §4): the role is issued only after MFA, within max_auth_age when set.
    require_mfa: bool = False
    max_auth_age: timedelta | None = None
    # The longest break-glass activation a row of the holder allows here (None: no such row).
    break_glass_max: timedelta | None = None
    # The grant in use was a break-glass activation: sessions carry BreakGlass=true.
    break_glass: bool = False

    @property
    def usable(self) -> bool:
        # Only what a person holds: never what they may request or break glass for.
        return self.access in (EntitlementAccess.STANDING, EntitlementAccess.GRANT)

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
    rank: int  # position in portal order (business unit, environment, alias)
    region: str


# Keys of (account, role) pairs are packed into one int: cheaper to hash than a tuple.
_ROLE_BITS = 20


@dataclass
class _Catalog:
    """Accounts and roles as plain tuples, loaded once per mapping version per process."""

    version: int
    bu_slugs: dict[int, str] = field(default_factory=dict)  # of units that have accounts
    by_bu: dict[str, tuple[_AccountInfo, ...]] = field(default_factory=dict)
    by_account_id: dict[str, _AccountInfo] = field(default_factory=dict)
    by_pk: dict[int, _AccountInfo] = field(default_factory=dict)
    roles: dict[int, tuple[str, timedelta, bool, int, bool, timedelta | None]] = field(
        default_factory=dict
    )
    role_ids: dict[str, int] = field(default_factory=dict)
    overrides: dict[tuple[int, int], tuple[str, timedelta | None]] = field(default_factory=dict)
    # (business unit, environments JSON, accounts JSON) -> the accounts a row with that scope
    # reaches; scopes repeat heavily, so each is worked out once.
    scopes: dict[tuple[int, Any, Any], tuple[int, ...]] = field(default_factory=dict)
    # Per packed (account, role) key: the fixed fields of an entitlement and its sort rank.
    templates: dict[int, tuple[tuple[Any, ...], tuple[Any, ...], int, tuple[Any, ...]]] = field(
        default_factory=dict
    )

    def key_of(self, account_id: str, role: str) -> int | None:
        """The packed key of one (account, role), or None when either is unknown."""
        account, role_id = self.by_account_id.get(account_id), self.role_ids.get(role)
        if account is None or role_id is None:
            return None
        return (account.pk << _ROLE_BITS) | role_id

    def targets(self, bu_id: int, environments: Any, accounts: Any) -> tuple[int, ...]:
        """The packed key bases (account pk << _ROLE_BITS) a row with this scope reaches."""
        key = (bu_id, environments, accounts)
        cached = self.scopes.get(key)
        if cached is None:
            slug = self.bu_slugs.get(bu_id)
            # A unit without accounts reaches nothing, whatever accounts its row names.
            reached = (
                ()
                if slug is None
                else accounts_reached(
                    slug,
                    _scope(environments),
                    _scope(accounts),
                    accounts_by_id=self.by_account_id,
                    accounts_of_unit=self.by_bu,
                )
            )
            cached = tuple(a.pk << _ROLE_BITS for a in reached)
            self.scopes[key] = cached
        return cached

    def template(self, key: int) -> tuple[tuple[Any, ...], tuple[Any, ...], int, tuple[Any, ...]]:
        """(the fields before ``access``, ``max_session`` and ``privileged``, the sort rank,
        ``region``, ``require_mfa`` and ``max_auth_age``) of one (account, role)."""
        cached = self.templates.get(key)
        if cached is None:
            account = self.by_pk[key >> _ROLE_BITS]
            role_id = key & ((1 << _ROLE_BITS) - 1)
            name, role_max, privileged, role_rank, require_mfa, max_auth_age = self.roles[role_id]
            arn, override_max = self.overrides.get((account.pk, role_id), ("", None))
            fixed = (
                account.account_id,
                account.alias,
                account.business_unit,
                account.environment,
                name,
                arn or f"arn:aws:iam::{account.account_id}:role/{name}",
            )
            extra = (override_max or role_max, privileged)
            tail = (account.region, require_mfa, _as_duration(max_auth_age))
            cached = (fixed, extra, account.rank * len(self.roles) + role_rank, tail)
            self.templates[key] = cached
        return cached


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A memoised mapping-derived result: sorted entitlements and their position by key."""

    entitlements: tuple[Entitlement, ...]
    position: dict[int, int]  # packed (account, role) key -> index


_lock = threading.Lock()
_catalog: _Catalog | None = None
_memo: OrderedDict[tuple[int, frozenset[str]], _Resolved] = OrderedDict()
_MEMO_SIZE = 4096
# Scope columns repeat heavily (a few environment sets, one entry per account): parse each once.
_scope_cache: dict[str, tuple[str, ...]] = {}


def clear_cache() -> None:
    """Forget every memoised result in this process (tests, and after out-of-band edits)."""
    global _catalog
    with _lock:
        _catalog = None
        _memo.clear()


def _load_catalog(version: int) -> _Catalog:
    catalog = _Catalog(version=version)
    accounts = sorted(
        Account.objects.values_list(
            "pk",
            "account_id",
            "alias",
            "business_unit_id",
            "business_unit__slug",
            "environment",
            "region",
        ),
        key=lambda a: (a[4], ENV_ORDER.get(a[5], 9), a[2]),
    )
    by_bu: dict[str, list[_AccountInfo]] = {}
    for rank, (pk, account_id, alias, bu_id, bu_slug, env, region) in enumerate(accounts):
        info = _AccountInfo(pk, account_id, alias, bu_slug, env, rank, region)
        catalog.bu_slugs[bu_id] = bu_slug
        by_bu.setdefault(bu_slug, []).append(info)
        catalog.by_account_id[account_id] = info
        catalog.by_pk[pk] = info
    catalog.by_bu = {bu_slug: tuple(infos) for bu_slug, infos in by_bu.items()}
    roles = LogicalRole.objects.order_by("name").values_list(
        "pk", "name", "max_session", "privileged", "require_mfa", "max_auth_age"
    )
    for rank, (pk, name, max_session, privileged, require_mfa, max_auth_age) in enumerate(roles):
        if pk >= 1 << _ROLE_BITS:
            raise ValueError("logical role ids beyond 2**20 are not supported")
        catalog.roles[pk] = (name, max_session, privileged, rank, require_mfa, max_auth_age)
        catalog.role_ids[name] = pk
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


def _scope(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        return tuple(str(v) for v in value or ())
    parsed = _scope_cache.get(value)
    if parsed is None:
        parsed = tuple(str(v) for v in json.loads(value))
        if len(_scope_cache) < 100_000:
            _scope_cache[value] = parsed
    return parsed


def _as_duration(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    # SQLite stores DurationField as microseconds.
    return timedelta(microseconds=int(value))


def _resolve_mappings(catalog: _Catalog, rows: list[tuple[Any, ...]]) -> _Resolved:
    # This loop is the hot path of a cold resolution (a user in 1,000 groups expands to
    # thousands of pairs): packed int keys, one dict per access kind, no per-pair objects.
    standing: dict[int, list[str]] = {}
    eligible: dict[int, list[str]] = {}
    longest: dict[int, timedelta] = {}
    # Break-glass rows: the groups, and the longest activation each key allows.
    glass: dict[int, list[str]] = {}
    glass_longest: dict[int, timedelta] = {}
    get_standing, get_eligible = standing.get, eligible.get
    targets, roles = catalog.targets, catalog.roles
    for group, role_id, bu_id, environments, accounts, access, max_grant in rows:
        if role_id not in roles:
            continue
        reached = targets(bu_id, environments, accounts)
        if access == Access.STANDING:
            for base in reached:
                key = base | role_id
                groups = get_standing(key)
                if groups is None:
                    standing[key] = [group]
                else:
                    groups.append(group)
            continue
        grant_len = _as_duration(max_grant)
        if access == Access.BREAK_GLASS:
            for base in reached:
                key = base | role_id
                glass.setdefault(key, []).append(group)
                if grant_len is not None and grant_len > glass_longest.get(key, _NO_GRANT):
                    glass_longest[key] = grant_len
            continue
        for base in reached:
            key = base | role_id
            groups = get_eligible(key)
            if groups is None:
                eligible[key] = [group]
            else:
                groups.append(group)
            if grant_len is not None and grant_len > longest.get(key, _NO_GRANT):
                longest[key] = grant_len
    built: list[tuple[int, int, Entitlement]] = []
    template, make = catalog.template, Entitlement._make
    for key, groups in standing.items():
        fixed, extra, rank, tail = template(key)
        via = (groups[0],) if len(groups) == 1 else tuple(sorted(set(groups)))
        built.append(
            (
                rank,
                key,
                make(
                    (
                        *fixed,
                        EntitlementAccess.STANDING,
                        via,
                        *extra,
                        None,
                        None,
                        None,
                        None,
                        *tail,
                        None,
                        False,
                    )
                ),
            )
        )
    for key, groups in eligible.items():
        if key in standing:
            continue
        fixed, extra, rank, tail = template(key)
        via = (groups[0],) if len(groups) == 1 else tuple(sorted(set(groups)))
        longest_grant = longest.get(key)
        built.append(
            (
                rank,
                key,
                make(
                    (
                        *fixed,
                        EntitlementAccess.ELIGIBLE,
                        via,
                        *extra,
                        longest_grant,
                        None,
                        None,
                        None,
                        *tail,
                        glass_longest.get(key) if key in glass else None,
                        False,
                    )
                ),
            )
        )
    for key, groups in glass.items():
        if key in standing or key in eligible:
            continue
        fixed, extra, rank, tail = template(key)
        via = (groups[0],) if len(groups) == 1 else tuple(sorted(set(groups)))
        built.append(
            (
                rank,
                key,
                make(
                    (
                        *fixed,
                        EntitlementAccess.BREAK_GLASS,
                        via,
                        *extra,
                        None,
                        None,
                        None,
                        None,
                        *tail,
                        glass_longest.get(key, _NO_GRANT),
                        False,
                    )
                ),
            )
        )
    built.sort()  # ranks are unique, so tuples never compare past them
    return _Resolved(
        entitlements=tuple(item[2] for item in built),
        position={item[1]: index for index, item in enumerate(built)},
    )


_NO_GRANT = timedelta(0)


def _mapping_entitlements(groups: Iterable[str], version: int) -> _Resolved:
    key = (version, frozenset(groups))
    with _lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
    if hit is not None:
        return hit
    catalog = _get_catalog(version)
    rows = fetch_mapping_rows(sorted(key[1])) if key[1] else []
    resolved = _resolve_mappings(catalog, rows)
    with _lock:
        _memo[key] = resolved
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return resolved


def resolve_entitlements(
    groups: Iterable[str], *, now: datetime, user_id: int | None = None
) -> list[Entitlement]:
    """Everything the holder of ``groups`` (and, with ``user_id``, their grants) may use or request.

    Guarantees: a mapping row only ever yields accounts of its own business unit; a grant counts
    only while it is active at ``now`` *and* the user is still eligible for it through a group
    they hold now. Sorted by business unit, environment, account alias and role.
    """
    version, grant_rows = current_version_and_grants(user_id, now=now)
    resolved = _mapping_entitlements(groups, version)
    result = list(resolved.entitlements)
    for grant in grant_rows:
        index = resolved.position.get(_grant_key(grant))
        if index is not None:
            result[index] = _with_grant(result[index], grant)
    return result


def find_entitlement(
    groups: Iterable[str], account_id: str, role: str, *, now: datetime, user_id: int | None = None
) -> Entitlement | None:
    """The entitlement for one (account, role), or None: what issuance and requests check.

    Same answer as picking it out of resolve_entitlements(), by one dictionary look-up instead
    of copying and scanning the whole list (issuance's hot path).
    """
    version, grant_rows = current_version_and_grants(user_id, now=now)
    resolved = _mapping_entitlements(groups, version)
    key = _get_catalog(version).key_of(account_id, role)
    index = resolved.position.get(key) if key is not None else None
    if index is None:
        return None
    entitlement = resolved.entitlements[index]
    for grant in grant_rows:
        if _grant_key(grant) == key:
            entitlement = _with_grant(entitlement, grant)
    return entitlement


def _grant_key(grant: tuple[Any, ...]) -> int:
    _, account_pk, role_id, _, _, _ = grant
    return (int(account_pk) << _ROLE_BITS) | int(role_id)


def _with_grant(base: Entitlement, grant: tuple[Any, ...]) -> Entitlement:
    """``base`` made usable by an active grant, if the user is still only eligible for it.

    Standing access needs no grant; and if the groups no longer make the user eligible, the
    (account, role) is not in the resolved set at all, so the grant adds nothing. A break-glass
    grant counts only while a break-glass row still reaches the holder, an approved one only
    while an eligible row does.
    """
    grant_id, _, _, ends_at, request_id, break_glass = grant
    if break_glass:
        usable = base.break_glass_max is not None and base.access != EntitlementAccess.STANDING
    else:
        usable = base.access == EntitlementAccess.ELIGIBLE
    if not usable or base.access == EntitlementAccess.GRANT:
        return base
    return base._replace(
        access=EntitlementAccess.GRANT,
        via=(f"grant #{grant_id}", *base.via),
        grant_id=int(grant_id),
        request_id=int(request_id),
        grant_ends_at=_aware(ends_at),
        break_glass=bool(break_glass),
    )


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        parsed = parse_datetime(value)
        assert parsed is not None
        value = parsed
    return make_aware(value) if is_naive(value) else value
