"""Planning: the row-level and effective-access difference between the tables and a document."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from django.db import models
from django.db.models import Count

from federation.entitlements.scope import accounts_reached
from federation.mappings.document import (
    AccountRoleRow,
    AccountRow,
    BusinessUnitRow,
    MappingDocument,
    MappingRow,
    RoleRow,
)
from federation.mappings.parsing import document_from_data
from federation.mappings.state import _Current, _load_current
from federation.models import (
    ENV_ORDER,
    Access,
    Account,
    AccountRole,
    BusinessUnit,
    GroupMapping,
    LogicalRole,
    User,
)

# --- Planning ---------------------------------------------------------------------------------


class _Row(Protocol):
    @property
    def key(self) -> Any: ...
    @property
    def label(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


RowT = TypeVar("RowT", bound=_Row)


@dataclass(frozen=True)
class _TableDiff(Generic[RowT]):
    added: tuple[RowT, ...]
    removed: tuple[RowT, ...]
    changed: tuple[tuple[RowT, RowT], ...]  # (before, after)


def _diff_table(before: Sequence[RowT], after: Sequence[RowT]) -> _TableDiff[RowT]:
    old = {row.key: row for row in before}
    new = {row.key: row for row in after}
    return _TableDiff(
        added=tuple(row for key, row in new.items() if key not in old),
        removed=tuple(row for key, row in old.items() if key not in new),
        changed=tuple(
            (old[key], row) for key, row in new.items() if key in old and old[key] != row
        ),
    )


@dataclass(frozen=True)
class RowChange:
    """One row added, removed or changed; before/after are canonical item dicts."""

    kind: str  # business_unit, account, role, account_role, mapping
    action: str  # add, remove, change
    label: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None

    @property
    def changed_fields(self) -> tuple[str, ...]:
        before, after = self.before or {}, self.after or {}
        return tuple(k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "label": self.label,
            "before": dict(self.before) if self.before is not None else None,
            "after": dict(self.after) if self.after is not None else None,
        }


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


@dataclass(frozen=True)
class Plan:
    """The difference between the tables (at ``base_version``) and a document.

    ``rows`` is the row-level diff; ``groups`` and ``users`` the effective-access diff;
    ``blockers`` the removals the database would refuse (apply raises RemovalRefused).
    """

    base_version: int
    rows: tuple[RowChange, ...]
    groups: tuple[AccessDiff, ...]
    users: tuple[AccessDiff, ...]
    blockers: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.rows

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        counts = {
            kind: {"add": 0, "remove": 0, "change": 0}
            for kind in ("business_unit", "account", "role", "account_role", "mapping")
        }
        for row in self.rows:
            counts[row.kind][row.action] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "base_version": self.base_version,
            "counts": self.counts,
            "rows": [row.to_json() for row in self.rows],
            "groups": [diff.to_json() for diff in self.groups],
            "users": [diff.to_json() for diff in self.users],
            "blockers": list(self.blockers),
            "accounts": self._accounts_json(),
        }

    def _accounts_json(self) -> dict[str, dict[str, str]]:
        accounts: dict[str, dict[str, str]] = {}
        for diff in self.groups:
            for item in (*diff.gained, *diff.lost):
                if item.account_id not in accounts:
                    accounts[item.account_id] = {
                        "alias": item.account_alias,
                        "business_unit": item.business_unit,
                        "environment": item.environment,
                    }
        return accounts

    def render_text(self) -> str:
        lines = [f"Plan against mapping version {self.base_version}:"]
        if self.is_empty:
            lines.append("  No changes: the tables already match this document.")
            return "\n".join(lines) + "\n"
        summary = []
        for kind, counts in self.counts.items():
            if any(counts.values()):
                summary.append(
                    f"{kind.replace('_', ' ')}s +{counts['add']} -{counts['remove']} "
                    f"~{counts['change']}"
                )
        lines.append(f"  {'; '.join(summary)}")
        lines.append("")
        lines.append("Rows:")
        sign = {"add": "+", "remove": "-", "change": "~"}
        for row in self.rows:
            if row.action == "change":
                before, after = row.before or {}, row.after or {}
                detail = "; ".join(
                    f"{name}: {_show(before.get(name))} -> {_show(after.get(name))}"
                    for name in row.changed_fields
                )
            else:
                detail = ", ".join(
                    f"{name}={_show(value)}"
                    for name, value in (row.after or row.before or {}).items()
                )
            lines.append(f"  {sign[row.action]} {row.label}: {detail}")
        for title, diffs in (
            ("Access by group", self.groups),
            ("Access by user (groups of their last sign-in)", self.users),
        ):
            lines.append("")
            lines.append(f"{title}:" if diffs else f"{title}: no change")
            for diff in diffs:
                lines.append(f"  {diff.subject}")
                lines.extend(f"    + {item}" for item in diff.gained)
                lines.extend(f"    - {item}" for item in diff.lost)
        if self.blockers:
            lines.append("")
            lines.append("Refused (these rows are still referenced and cannot be removed):")
            lines.extend(f"  ! {blocker}" for blocker in self.blockers)
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return f"[{', '.join(map(str, value))}]"
    return str(value)


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


def _access_diffs(
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


@dataclass(frozen=True)
class _Diff:
    business_units: _TableDiff[BusinessUnitRow]
    accounts: _TableDiff[AccountRow]
    roles: _TableDiff[RoleRow]
    account_roles: _TableDiff[AccountRoleRow]
    mappings: _TableDiff[MappingRow]

    def tables(self) -> tuple[tuple[str, _TableDiff[Any]], ...]:
        return (
            ("business_unit", self.business_units),
            ("account", self.accounts),
            ("role", self.roles),
            ("account_role", self.account_roles),
            ("mapping", self.mappings),
        )


def _row_changes(diff: _Diff) -> tuple[RowChange, ...]:
    changes: list[RowChange] = []
    for kind, table in diff.tables():
        changes.extend(RowChange(kind, "add", r.label, None, r.to_dict()) for r in table.added)
        changes.extend(RowChange(kind, "remove", r.label, r.to_dict(), None) for r in table.removed)
        changes.extend(
            RowChange(kind, "change", new.label, old.to_dict(), new.to_dict())
            for old, new in table.changed
        )
    return tuple(changes)


_MAPPING_MODELS: tuple[type[models.Model], ...] = (
    BusinessUnit,
    Account,
    LogicalRole,
    AccountRole,
    GroupMapping,
)


def _references(model: type[models.Model], pks: Mapping[int, str]) -> list[str]:
    """Rows outside the mapping tables that would stop these rows being deleted (PROTECT)."""
    if not pks:
        return []
    found: dict[int, list[str]] = {}
    # include_hidden: access_requests' foreign keys use related_name="+", which related_objects
    # leaves out.
    for relation in model._meta.get_fields(include_hidden=True):
        if not isinstance(relation, models.ForeignObjectRel):
            continue
        related = relation.related_model
        if (
            relation.on_delete not in (models.PROTECT, models.RESTRICT)
            or not isinstance(related, type)
            or related in _MAPPING_MODELS
        ):
            continue
        name = relation.field.name
        rows = (
            related._default_manager.filter(**{f"{name}__in": list(pks)})
            .values_list(name)
            .annotate(n=Count("pk"))
            .order_by()
        )
        for pk, count in rows:
            noun = related._meta.verbose_name if count == 1 else related._meta.verbose_name_plural
            found.setdefault(pk, []).append(f"{count} {noun}")
    return [
        f"{pks[pk]} is still referenced by {', '.join(found[pk])}; keep it in the file"
        for pk in sorted(found, key=lambda pk: pks[pk])
    ]


def _plan(document: MappingDocument, current: _Current) -> tuple[Plan, _Diff]:
    before = current.document
    diff = _Diff(
        business_units=_diff_table(before.business_units, document.business_units),
        accounts=_diff_table(before.accounts, document.accounts),
        roles=_diff_table(before.roles, document.roles),
        account_roles=_diff_table(before.account_roles, document.account_roles),
        mappings=_diff_table(before.mappings, document.mappings),
    )
    rows = _row_changes(diff)
    if current.stray_mapping_pks:
        rows += (
            RowChange(
                "mapping",
                "remove",
                f"{len(current.stray_mapping_pks)} duplicate mapping row(s) written outside "
                "the mapping file",
                {"ids": list(current.stray_mapping_pks)},
                None,
            ),
        )
    blockers = [
        *_references(Account, {current.account_pk[r.key]: r.label for r in diff.accounts.removed}),
        *_references(LogicalRole, {current.role_pk[r.key]: r.label for r in diff.roles.removed}),
        *_references(
            BusinessUnit, {current.bu_pk[r.key]: r.label for r in diff.business_units.removed}
        ),
    ]
    groups, users = _access_diffs(before, document) if rows else ((), ())
    return Plan(current.version, rows, groups, users, tuple(blockers)), diff


def plan_document(document: MappingDocument) -> Plan:
    """What applying ``document`` would change, against the tables as they are now.

    Read-only. ``Plan.base_version`` is the version it was computed against: pass it to
    apply_document() so the apply is refused if the tables moved in between.
    """
    return _plan(document, _load_current())[0]


DocumentData = dict[str, list[dict[str, Any]]]


def plan_change(change: Callable[[DocumentData], None]) -> tuple[MappingDocument, Plan]:
    """Edit the tables' current document with ``change`` and plan the result.

    The state is read once: the edit starts from exactly the state the plan is computed
    against, so the plan's base version is the one the edit saw and a concurrent apply makes
    the later apply refuse (MappingConflict) instead of silently undoing it. Raises
    MappingFileInvalid when the edited document is not valid.
    """
    current = _load_current()
    data = current.document.to_dict()
    change(data)
    document = document_from_data(data)
    return document, _plan(document, current)[0]
