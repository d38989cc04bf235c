"""Planning: the row-level difference between the tables and a document, the removals the
database would refuse, who gains and loses access (``access_diff``), who may newly approve what
(``approval_diff``), and whether the change needs a second admin (``sensitivity``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from django.db import models
from django.db.models import Count

from federation.mappings.access_diff import (
    AccessDiff,
    access_diffs,
    changed_groups,
    expanders,
    user_groups,
)
from federation.mappings.approval_diff import ApprovalDiff, approval_diffs
from federation.mappings.document import (
    AccountRoleRow,
    AccountRow,
    BusinessUnitRow,
    MappingDocument,
    MappingRow,
    RoleRow,
)
from federation.mappings.parsing import document_from_data
from federation.mappings.sensitivity import sensitive_because
from federation.mappings.state import _Current, _load_current
from federation.models import (
    Account,
    AccountRole,
    BusinessUnit,
    GroupMapping,
    LogicalRole,
)


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
class Plan:
    """The difference between the tables (at ``base_version``) and a document.

    ``rows`` is the row-level diff; ``groups`` and ``users`` the effective-access diff;
    ``blockers`` the removals the database would refuse (apply raises RemovalRefused);
    ``approvers`` and ``approver_users`` the approval power gained and lost per approver group
    and per person; ``sensitive_because`` why the change needs a second admin (empty: its
    author may apply it alone).
    """

    base_version: int
    rows: tuple[RowChange, ...]
    groups: tuple[AccessDiff, ...]
    users: tuple[AccessDiff, ...]
    blockers: tuple[str, ...] = ()
    approvers: tuple[ApprovalDiff, ...] = ()
    approver_users: tuple[ApprovalDiff, ...] = ()
    sensitive_because: tuple[str, ...] = ()

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
            "approvers": [diff.to_json() for diff in self.approvers],
            "approver_users": [diff.to_json() for diff in self.approver_users],
            "sensitive_because": list(self.sensitive_because),
        }

    def _accounts_json(self) -> dict[str, dict[str, str]]:
        accounts: dict[str, dict[str, str]] = {}
        diffs: tuple[AccessDiff | ApprovalDiff, ...] = (*self.groups, *self.approvers)
        for diff in diffs:
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
        approvals: tuple[tuple[str, tuple[ApprovalDiff, ...]], ...] = (
            ("Approval power by approver group", self.approvers),
            ("Approval power by user (groups of their last sign-in)", self.approver_users),
        )
        for title, approval_diffs_ in approvals:
            if not approval_diffs_:
                continue
            lines.append("")
            lines.append(f"{title}:")
            for approval in approval_diffs_:
                lines.append(f"  {approval.subject} may decide")
                lines.extend(f"    + {entry}" for entry in approval.gained)
                lines.extend(f"    - {entry}" for entry in approval.lost)
        if self.sensitive_because:
            lines.append("")
            lines.append("Sensitive (needs a second administrator, or a command's --emergency):")
            lines.extend(f"  * {reason}" for reason in self.sensitive_because)
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
    if not rows:
        return Plan(current.version, rows, (), (), tuple(blockers)), diff
    old, new = expanders(before, document)
    people = user_groups()
    candidates = changed_groups(old, new)
    groups, users = access_diffs(old, new, people, candidates)
    approvers, approver_users = approval_diffs(old, new, candidates, people)
    because = sensitive_because(
        before=before, after=document, rows=rows, groups=groups, approvers=approvers
    )
    plan = Plan(
        current.version,
        rows,
        groups,
        users,
        tuple(blockers),
        approvers=approvers,
        approver_users=approver_users,
        sensitive_because=because,
    )
    return plan, diff


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
