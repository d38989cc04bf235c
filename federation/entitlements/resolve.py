"""Which (account, role) a user may use now: the one place entitlements are computed (SPEC §2).

An entitlement is standing mappings plus active grants, plus the eligible rows a user may request.
The lookup is by the user's groups through the index of the expanded entitlement rows
(``EntitlementRow``: each mapping row already expanded to the accounts it reaches, kept in step
by the database), gathered per (account, role) by PostgreSQL (``= ANY(%s)``, never a scan:
``federation.entitlements.queries``); entitlements are built from a per-process catalog of
accounts and roles.

Mapping-derived results are memoised per process under (mapping version, group set). Every
mapping change goes through ``federation.mappings``, which writes a new version, so a change
anywhere invalidates every process's cache on its next call. Grants are per user and
time-dependent and are never cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from federation.entitlements.queries import (
    ROLE_BITS,
    current_version_and_grants,
    fetch_entitlement_rows,
)
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


_ROLE_BITS = ROLE_BITS  # packed (account, role) keys: federation.entitlements.queries
_ROLE_MASK = (1 << _ROLE_BITS) - 1
_Template = tuple[tuple[Any, ...], tuple[Any, ...], int, tuple[Any, ...], tuple[Any, ...]]


@dataclass
class _Catalog:
    """Accounts and roles as plain tuples, loaded once per mapping version per process."""

    version: int
    by_account_id: dict[str, _AccountInfo] = field(default_factory=dict)
    by_pk: dict[int, _AccountInfo] = field(default_factory=dict)
    roles: dict[int, tuple[str, timedelta, bool, int, bool, timedelta | None]] = field(
        default_factory=dict
    )
    role_ids: dict[str, int] = field(default_factory=dict)
    overrides: dict[tuple[int, int], tuple[str, timedelta | None]] = field(default_factory=dict)
    # Per packed (account, role) key: the fixed fields of an entitlement and its sort rank.
    templates: dict[int, _Template] = field(default_factory=dict)

    def key_of(self, account_id: str, role: str) -> int | None:
        """The packed key of one (account, role), or None when either is unknown."""
        account, role_id = self.by_account_id.get(account_id), self.role_ids.get(role)
        if account is None or role_id is None:
            return None
        return (account.pk << _ROLE_BITS) | role_id

    def knows(self, key: int) -> bool:
        """Whether both the account and the role of a packed key are in this catalog."""
        return key >> _ROLE_BITS in self.by_pk and key & _ROLE_MASK in self.roles

    def template(self, key: int) -> _Template:
        """(the fields before ``access``, ``max_session`` and ``privileged``, the sort rank,
        ``region``, ``require_mfa`` and ``max_auth_age``, the fields after ``via`` of a standing
        entitlement) of one (account, role)."""
        cached = self.templates.get(key)
        if cached is None:
            account = self.by_pk[key >> _ROLE_BITS]
            role_id = key & _ROLE_MASK
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
            # Everything after ``via`` of a standing entitlement, the common case, in one piece.
            standing = (*extra, None, None, None, None, *tail, None, False)
            cached = (fixed, extra, account.rank * len(self.roles) + role_rank, tail, standing)
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
            "business_unit__slug",
            "environment",
            "region",
        ),
        key=lambda a: (a[3], ENV_ORDER.get(a[4], 9), a[2]),
    )
    for rank, (pk, account_id, alias, bu_slug, env, region) in enumerate(accounts):
        info = _AccountInfo(pk, account_id, alias, bu_slug, env, rank, region)
        catalog.by_account_id[account_id] = info
        catalog.by_pk[pk] = info
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


def _get_catalog(version: int, *, reload: bool = False) -> _Catalog:
    global _catalog
    current = _catalog
    if current is not None and current.version == version and not reload:
        return current
    fresh = _load_catalog(version)
    with _lock:
        _catalog = fresh
    return fresh


def _as_duration(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    # SQLite stores DurationField as microseconds.
    return timedelta(microseconds=int(value))


def _resolve_mappings(catalog: _Catalog, rows: list[tuple[Any, ...]]) -> _Resolved:
    # The hot path of a cold resolution. The database has already expanded every row's scope to
    # accounts, so this gathers the groups per (account, role) and access kind, and builds the
    # entitlements from per-pair templates: packed int keys, plain dicts, no per-row objects.
    standing: dict[int, list[str]] = {}
    eligible: dict[int, list[str]] = {}
    longest: dict[int, Any] = {}
    # Break-glass rows: the groups, and the longest activation each key allows.
    glass: dict[int, list[str]] = {}
    glass_longest: dict[int, Any] = {}
    get_standing, get_eligible = standing.get, eligible.get
    for key, group, access, max_grant in rows:
        if access == _STANDING:
            groups = get_standing(key)
            if groups is None:
                standing[key] = [group]
            else:
                groups.append(group)
        elif access == _ELIGIBLE:
            groups = get_eligible(key)
            if groups is None:
                eligible[key] = [group]
                longest[key] = max_grant
            else:
                groups.append(group)
                if max_grant is not None and (longest[key] is None or max_grant > longest[key]):
                    longest[key] = max_grant
        else:
            groups = glass.get(key)
            if groups is None:
                glass[key] = [group]
                glass_longest[key] = max_grant
            else:
                groups.append(group)
                if max_grant is not None and (
                    glass_longest[key] is None or max_grant > glass_longest[key]
                ):
                    glass_longest[key] = max_grant
    built: list[tuple[int, int, Entitlement]] = []
    append, templates = built.append, catalog.templates
    template = _template_of(catalog)
    kind = EntitlementAccess.STANDING
    for key, groups in standing.items():
        fixed, _, rank, _, rest = templates.get(key) or template(key)
        via = (groups[0],) if len(groups) == 1 else tuple(sorted(set(groups)))
        append((rank, key, _new(Entitlement, (*fixed, kind, via, *rest))))
    kind = EntitlementAccess.ELIGIBLE
    for key, groups in eligible.items():
        if key in standing:
            continue
        fixed, extra, rank, tail, _ = templates.get(key) or template(key)
        via = (groups[0],) if len(groups) == 1 else tuple(sorted(set(groups)))
        grant = _as_duration(longest[key])
        glass_max = _as_duration(glass_longest[key]) if key in glass else None
        entitlement = (*fixed, kind, via, *extra, grant, None, None, None, *tail, glass_max, False)
        append((rank, key, _new(Entitlement, entitlement)))
    kind = EntitlementAccess.BREAK_GLASS
    for key, groups in glass.items():
        if key in standing or key in eligible:
            continue
        fixed, extra, rank, tail, _ = templates.get(key) or template(key)
        via = (groups[0],) if len(groups) == 1 else tuple(sorted(set(groups)))
        glass_max = _as_duration(glass_longest[key]) or _NO_GRANT
        entitlement = (*fixed, kind, via, *extra, None, None, None, None, *tail, glass_max, False)
        append((rank, key, _new(Entitlement, entitlement)))
    built.sort()  # ranks are unique, so tuples never compare past them
    return _Resolved(
        entitlements=tuple(item[2] for item in built),
        position={item[1]: index for index, item in enumerate(built)},
    )


_STANDING, _ELIGIBLE = Access.STANDING.value, Access.ELIGIBLE.value
_new = tuple.__new__  # Entitlement._make without its length check: the fields are ours


class _StaleCatalog(Exception):
    """An expanded row names an account or role this process's catalog does not know yet."""


def _template_of(catalog: _Catalog) -> Callable[[int], _Template]:
    def template(key: int) -> _Template:
        if not catalog.knows(key):
            raise _StaleCatalog
        return catalog.template(key)

    return template


_NO_GRANT = timedelta(0)


def _mapping_entitlements(groups: Iterable[str], version: int) -> _Resolved:
    key = (version, frozenset(groups))
    with _lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
    if hit is not None:
        return hit
    rows = fetch_entitlement_rows(list(key[1])) if key[1] else []
    try:
        resolved = _resolve_mappings(_get_catalog(version), rows)
    except _StaleCatalog:
        # The tables moved without a new mapping version (a shell session, a test): reload. An
        # account deleted between the read of the rows and the reload is simply left out.
        catalog = _get_catalog(version, reload=True)
        known = [row for row in rows if catalog.knows(row[0])]
        resolved = _resolve_mappings(catalog, known)
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
