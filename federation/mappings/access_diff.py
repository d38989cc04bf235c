"""Who gains and loses what: the effective-access half of a plan, per group and per known user.

Mapping rows are expanded to (account, role) by the one scope rule entitlements use, so the
plan's access diff agrees with what ``resolve_entitlements`` will say after the apply. What a
holder reaches is the IAM role ARN (an ``account_roles`` entry may point a logical role at any
role of its account), with the session and grant limits: a change of any of these is a loss of
the old item and a gain of the new one, so a plan never hides a new ARN or a longer grant behind
an unchanged logical role name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from federation.entitlements.scope import accounts_reached
from federation.mappings.document import AccountRow, MappingDocument, MappingRow, _minutes
from federation.models import ENV_ORDER, Access, User


@dataclass(frozen=True)
class AccessItem:
    """One (account, role, access kind) a group or user gains or loses, with the IAM role ARN
    it reaches and its limits. ``privileged``: the logical role is privileged, or the ARN is the
    ARN of a privileged role of that account."""

    account_id: str
    account_alias: str
    business_unit: str
    environment: str
    role: str
    access: str  # standing or eligible
    privileged: bool
    role_arn: str = ""
    max_session: timedelta | None = None
    max_grant: timedelta | None = None  # eligible only: the longest grant that may be asked
    # Set on the pair shown when only the limits change, so the two lines differ in text.
    show_limits: bool = field(default=False, compare=False)
    # Derived once: a first import repeats each item for thousands of people.
    default_arn: bool = field(init=False, compare=False, repr=False)
    json_key: tuple[Any, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        default = not self.role_arn or self.role_arn == default_role_arn(self.account_id, self.role)
        session = None if self.max_session is None else _minutes(self.max_session)
        grant = None if self.max_grant is None else _minutes(self.max_grant)
        object.__setattr__(self, "default_arn", default)
        object.__setattr__(
            self, "json_key", (self.role, self.access, self.privileged, session, grant)
        )

    def __str__(self) -> str:
        arn = "" if self.default_arn else f" as {self.role_arn}"
        limits = ""
        if self.show_limits:
            shown = [f"max session {_show_minutes(self.max_session)}"]
            if self.max_grant is not None:
                shown.append(f"max grant {_show_minutes(self.max_grant)}")
            limits = f" ({', '.join(shown)})"
        flag = "  [privileged]" if self.privileged else ""
        return (
            f"{self.role} ({self.access}) in {self.account_alias} {self.account_id} "
            f"[{self.business_unit}/{self.environment}]{arn}{limits}{flag}"
        )


def default_role_arn(account_id: str, role: str) -> str:
    """The ARN a logical role has in an account without an ``account_roles`` entry."""
    return f"arn:aws:iam::{account_id}:role/{role}"


def role_identity(arn: str) -> tuple[str, str]:
    """The IAM role an ARN names: (account, role name in lower case). IAM role names are unique
    per account whatever their path, and case-insensitively, so ``role/ops/Admin`` is no
    other role than ``role/admin``."""
    parts = arn.split(":", 5)
    account = parts[4] if len(parts) == 6 else ""
    return (account, arn.rsplit("/", 1)[-1].lower())


def _show_minutes(value: timedelta | None) -> str:
    return "(none)" if value is None else f"{_minutes(value)} min"


@dataclass(frozen=True)
class AccessDiff:
    """What one group (or one known user, through their groups) gains and loses."""

    subject: str  # the group name, or the user's label
    gained: tuple[AccessItem, ...]
    lost: tuple[AccessItem, ...]
    user_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"subject": self.subject}
        if self.user_id is not None:
            item["user_id"] = self.user_id
        item["gained"] = _access_json(self.gained)
        item["lost"] = _access_json(self.lost)
        return item


def _access_json(items: Sequence[AccessItem]) -> list[dict[str, Any]]:
    """Items grouped by (role, access, limits): a first import gains every user hundreds of
    items, and their accounts' alias, unit and environment go once into the plan's "accounts"
    table. ``role_arns`` names the accounts whose ARN is not the default one."""
    grouped: dict[tuple[Any, ...], tuple[list[str], dict[str, str]]] = {}
    for a in items:
        found = grouped.get(a.json_key)
        if found is None:
            found = grouped[a.json_key] = ([], {})
        accounts, arns = found
        accounts.append(a.account_id)
        if not a.default_arn:
            arns[a.account_id] = a.role_arn
    result = []
    for (role, access, privileged, session, grant), (accounts, arns) in grouped.items():
        entry: dict[str, Any] = {
            "role": role,
            "access": access,
            "privileged": privileged,
            "accounts": accounts,
            "max_session_minutes": session,
        }
        if grant is not None:
            entry["max_grant_minutes"] = grant
        if arns:
            entry["role_arns"] = arns
        result.append(entry)
    return result


# What a holder has of one (account, role): (access kind, role ARN, max session, max grant).
_Access = tuple[str, str, timedelta, timedelta | None]
_AccessMap = dict[tuple[str, str], _Access]  # (account id, role) -> what is reached


class Expander:
    """Mapping rows of one state expanded to (account, role) per group, as entitlements does."""

    def __init__(self, document: MappingDocument) -> None:
        self.accounts = {a.account_id: a for a in document.accounts}
        self.roles = {r.name: r for r in document.roles}
        self.by_bu: dict[str, list[AccountRow]] = {}
        for account in document.accounts:
            self.by_bu.setdefault(account.business_unit, []).append(account)
        self.rows: dict[str, list[MappingRow]] = {}
        for row in document.mappings:
            self.rows.setdefault(row.group, []).append(row)
        self.overrides = {o.key: o for o in document.account_roles}
        self.bu_approvers = {b.slug: b.approver_groups for b in document.business_units}
        # Every ARN a privileged role has in this state: pointing another role at one of them
        # hands out that role, whatever the logical name says.
        self.privileged_arns = {
            role_identity(self.arn(account_id, role.name))
            for role in document.roles
            if role.privileged
            for account_id in self.accounts
        }
        self._memo: dict[str, _AccessMap] = {}
        self._fixed: dict[tuple[str, str], tuple[str, timedelta]] = {}
        self._items: dict[tuple[Any, ...], tuple[tuple[Any, ...], AccessItem]] = {}

    def arn(self, account_id: str, role: str) -> str:
        override = self.overrides.get((account_id, role))
        return (override and override.role_arn) or default_role_arn(account_id, role)

    def fixed(self, key: tuple[str, str]) -> tuple[str, timedelta]:
        """The role ARN and max session of one (account, role), as resolution computes them."""
        found = self._fixed.get(key)
        if found is None:
            override = self.overrides.get(key)
            session = override.max_session if override else None
            found = self._fixed[key] = (
                self.arn(*key),
                session or self.roles[key[1]].max_session,
            )
        return found

    def bu_signature(self, bu: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((a.account_id, a.environment) for a in self.by_bu.get(bu, ())))

    def access(self, group: str) -> _AccessMap:
        found = self._memo.get(group)
        if found is not None:
            return found
        found = {}
        for row in self.rows.get(group, ()):
            if row.role not in self.roles:
                continue
            targets = accounts_reached(
                row.business_unit,
                row.environments,
                row.accounts,
                accounts_by_id=self.accounts,
                accounts_of_unit=self.by_bu,
            )
            for account in targets:
                key = (account.account_id, row.role)
                arn, session = self.fixed(key)
                found[key] = _merge(found.get(key), (row.access, arn, session, row.max_grant))
        self._memo[group] = found
        return found

    def item(
        self, key: tuple[str, str], value: _Access, show_limits: bool = False
    ) -> tuple[tuple[Any, ...], AccessItem]:
        """The AccessItem and its sort key; memoised, as a first import repeats them per user."""
        found = self._items.get((key, value, show_limits))
        if found is None:
            account = self.accounts[key[0]]
            role = self.roles.get(key[1])
            access, arn, session, grant = value
            item = AccessItem(
                account_id=account.account_id,
                account_alias=account.alias,
                business_unit=account.business_unit,
                environment=account.environment,
                role=key[1],
                access=access,
                privileged=bool(role and role.privileged)
                or role_identity(arn) in self.privileged_arns,
                role_arn=arn,
                max_session=session,
                max_grant=grant,
                show_limits=show_limits,
            )
            order = (
                item.business_unit,
                ENV_ORDER.get(item.environment, 9),
                item.account_alias,
                item.role,
                item.access,
            )
            found = self._items[(key, value, show_limits)] = (order, item)
        return found

    def merged(self, groups: Iterable[str]) -> _AccessMap:
        """What holding all ``groups`` gives: standing wins over eligible, as in entitlements."""
        merged: _AccessMap = {}
        for group in groups:
            for key, value in self.access(group).items():
                merged[key] = _merge(merged.get(key), value)
        return merged


_RANK = {Access.STANDING.value: 0, Access.ELIGIBLE.value: 1, Access.BREAK_GLASS.value: 2}


def _merge(held: _Access | None, more: _Access) -> _Access:
    """Two sources of one (account, role) combined as resolution does: standing wins, then
    eligible over break-glass; between rows of one kind the longest grant is what may be had."""
    if held is None or held[0] == Access.STANDING:
        return more if held is None else held
    if more[0] == Access.STANDING:
        return (more[0], more[1], more[2], None)
    if _RANK.get(more[0], 9) != _RANK.get(held[0], 9):
        return more if _RANK.get(more[0], 9) < _RANK.get(held[0], 9) else held
    if more[3] is not None and (held[3] is None or more[3] > held[3]):
        return more
    return held


def _compare(
    before: Expander,
    after: Expander,
    keys: Iterable[tuple[str, str]],
    old: _AccessMap,
    new: _AccessMap,
) -> tuple[tuple[AccessItem, ...], tuple[AccessItem, ...]]:
    gained: list[tuple[tuple[Any, ...], AccessItem]] = []
    lost: list[tuple[tuple[Any, ...], AccessItem]] = []
    for key in keys:
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        # Same access and ARN: only a limit changed; the two lines then show the limits.
        limits = was is not None and now is not None and was[:2] == now[:2]
        if now is not None:
            gained.append(after.item(key, now, limits))
        if was is not None:
            lost.append(before.item(key, was, limits))
    gained.sort(key=lambda pair: pair[0])
    lost.sort(key=lambda pair: pair[0])
    return tuple(item for _, item in gained), tuple(item for _, item in lost)


def expanders(before_doc: MappingDocument, after_doc: MappingDocument) -> tuple[Expander, Expander]:
    """Both states expanded; an ARN privileged in either state counts as privileged in both (a
    change that strips the flag and repoints a role in one go is still shown as privileged)."""
    before, after = Expander(before_doc), Expander(after_doc)
    shared = before.privileged_arns | after.privileged_arns
    before.privileged_arns = after.privileged_arns = shared
    return before, after


def changed_groups(before: Expander, after: Expander) -> set[str]:
    """The groups whose access may differ between the two states (a superset)."""
    bus = set(before.by_bu) | set(after.by_bu)
    # A unit whose accounts moved, changed environment, or changed an account role's ARN or
    # session: every row of the unit may reach something else.
    touched_bus = {bu for bu in bus if before.bu_signature(bu) != after.bu_signature(bu)}
    for key in before.overrides.keys() | after.overrides.keys():
        if before.overrides.get(key) != after.overrides.get(key):
            for side in (before, after):
                if key[0] in side.accounts:
                    touched_bus.add(side.accounts[key[0]].business_unit)
    roles_changed = {
        name
        for name in before.roles.keys() | after.roles.keys()
        if before.roles.get(name) != after.roles.get(name)
    }
    candidates = set()
    for group in set(before.rows) | set(after.rows):
        old_rows, new_rows = before.rows.get(group, []), after.rows.get(group, [])
        if (
            set(old_rows) != set(new_rows)
            or any(r.business_unit in touched_bus or r.role in roles_changed for r in old_rows)
            or any(r.business_unit in touched_bus or r.role in roles_changed for r in new_rows)
        ):
            candidates.add(group)
    return candidates


def user_groups() -> list[tuple[int, str, set[str]]]:
    """Every known user as (pk, label, the groups of their last sign-in)."""
    users = User.objects.order_by("pk").values_list("pk", "username", "email", "directory_groups")
    return [
        (pk, email or username, {g for g in directory_groups or [] if isinstance(g, str)})
        for pk, username, email, directory_groups in users
    ]


def access_diffs(
    before: Expander,
    after: Expander,
    users: Sequence[tuple[int, str, set[str]]] | None = None,
    candidates: set[str] | None = None,
) -> tuple[tuple[AccessDiff, ...], tuple[AccessDiff, ...]]:
    """Per group and per known user, what they gain and lose. ``candidates``: the groups
    ``changed_groups`` found, when the caller already has them."""
    group_diffs: dict[str, AccessDiff] = {}
    touched: dict[str, set[tuple[str, str]]] = {}
    if candidates is None:
        candidates = changed_groups(before, after)
    for group in sorted(candidates):
        old_map, new_map = before.access(group), after.access(group)
        keys = {k for k in old_map.keys() | new_map.keys() if old_map.get(k) != new_map.get(k)}
        if not keys:
            continue
        gained, lost = _compare(before, after, keys, old_map, new_map)
        group_diffs[group] = AccessDiff(group, gained, lost)
        touched[group] = keys

    user_diffs: list[AccessDiff] = []
    if group_diffs:
        for pk, label, groups in user_groups() if users is None else users:
            changed = groups & touched.keys()
            if not changed:
                continue
            # Groups the plan does not touch give the same before and after, so only the
            # touched keys can differ.
            keys = set().union(*(touched[g] for g in changed))
            gained, lost = _compare(
                before, after, keys, before.merged(groups), after.merged(groups)
            )
            if gained or lost:
                user_diffs.append(AccessDiff(label, gained, lost, user_id=pk))
    return tuple(group_diffs.values()), tuple(user_diffs)
