"""Who gains and loses what: the effective-access half of a plan, per group and per known user.

Mapping rows are expanded to (account, role) by the one scope rule entitlements use, so the
plan's access diff agrees with what ``resolve_entitlements`` will say after the apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from federation.entitlements.scope import accounts_reached
from federation.mappings.document import AccountRow, MappingDocument, MappingRow
from federation.models import ENV_ORDER, Access, User


@dataclass(frozen=True)
class AccessItem:
    """One (account, role, access kind) a group or user gains or loses."""

    account_id: str
    account_alias: str
    business_unit: str
    environment: str
    role: str
    access: str  # standing or eligible
    privileged: bool

    def __str__(self) -> str:
        flag = "  [privileged]" if self.privileged else ""
        return (
            f"{self.role} ({self.access}) in {self.account_alias} {self.account_id} "
            f"[{self.business_unit}/{self.environment}]{flag}"
        )


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
    """Items grouped by (role, access): a first import gains every user hundreds of items, and
    their accounts' alias, unit and environment go once into the plan's "accounts" table."""
    grouped: dict[tuple[str, str, bool], list[str]] = {}
    for a in items:
        grouped.setdefault((a.role, a.access, a.privileged), []).append(a.account_id)
    return [
        {"role": role, "access": access, "privileged": privileged, "accounts": accounts}
        for (role, access, privileged), accounts in grouped.items()
    ]


_AccessMap = dict[tuple[str, str], str]  # (account id, role) -> standing | eligible


class _Expander:
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
        self._memo: dict[str, _AccessMap] = {}
        self._items: dict[tuple[tuple[str, str], str], tuple[tuple[Any, ...], AccessItem]] = {}

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
                if row.access == Access.STANDING or key not in found:
                    found[key] = row.access
        self._memo[group] = found
        return found

    def item(self, key: tuple[str, str], access: str) -> tuple[tuple[Any, ...], AccessItem]:
        """The AccessItem and its sort key; memoised, as a first import repeats them per user."""
        found = self._items.get((key, access))
        if found is None:
            account = self.accounts[key[0]]
            role = self.roles.get(key[1])
            item = AccessItem(
                account_id=account.account_id,
                account_alias=account.alias,
                business_unit=account.business_unit,
                environment=account.environment,
                role=key[1],
                access=access,
                privileged=bool(role and role.privileged),
            )
            order = (
                item.business_unit,
                ENV_ORDER.get(item.environment, 9),
                item.account_alias,
                item.role,
                item.access,
            )
            found = self._items[(key, access)] = (order, item)
        return found

    def merged(self, groups: Iterable[str]) -> _AccessMap:
        """What holding all ``groups`` gives: standing wins over eligible, as in entitlements."""
        merged: _AccessMap = {}
        for group in groups:
            for key, access in self.access(group).items():
                if access == Access.STANDING or key not in merged:
                    merged[key] = access
        return merged


def _compare(
    before: _Expander,
    after: _Expander,
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
        if now is not None:
            gained.append(after.item(key, now))
        if was is not None:
            lost.append(before.item(key, was))
    gained.sort(key=lambda pair: pair[0])
    lost.sort(key=lambda pair: pair[0])
    return tuple(item for _, item in gained), tuple(item for _, item in lost)


def access_diffs(
    before_doc: MappingDocument, after_doc: MappingDocument
) -> tuple[tuple[AccessDiff, ...], tuple[AccessDiff, ...]]:
    before, after = _Expander(before_doc), _Expander(after_doc)
    bus = set(before.by_bu) | set(after.by_bu)
    moved_bus = {bu for bu in bus if before.bu_signature(bu) != after.bu_signature(bu)}
    roles_changed = set(before.roles) ^ set(after.roles)
    candidates = set()
    for group in set(before.rows) | set(after.rows):
        old_rows, new_rows = before.rows.get(group, []), after.rows.get(group, [])
        if (
            set(old_rows) != set(new_rows)
            or any(r.business_unit in moved_bus or r.role in roles_changed for r in old_rows)
            or any(r.business_unit in moved_bus or r.role in roles_changed for r in new_rows)
        ):
            candidates.add(group)

    group_diffs: dict[str, AccessDiff] = {}
    touched: dict[str, set[tuple[str, str]]] = {}
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
        users = User.objects.order_by("pk").values_list(
            "pk", "username", "email", "directory_groups"
        )
        for pk, username, email, directory_groups in users:
            groups = {g for g in directory_groups or [] if isinstance(g, str)}
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
                user_diffs.append(AccessDiff(email or username, gained, lost, user_id=pk))
    return tuple(group_diffs.values()), tuple(user_diffs)
