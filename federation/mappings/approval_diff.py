"""Who may approve what: the approval half of a plan, per approver group and per known user.

A request for (account, role), filed through an eligible row of a requesting group, is decided
by the approver groups ``access_requests.approvers.approver_groups_for`` names: the business
unit's, the account's and the row's own, with the account's ``approvals_required`` distinct
approvers. A mapping change that hands an approver group power over a request it could not
decide before, or lets fewer approvers decide it, widens approval power as surely as a mapping
row widens access: the plan shows it and the second-admin rule weighs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from federation.entitlements.scope import accounts_reached
from federation.mappings.access_diff import Expander, role_identity
from federation.models import ENV_ORDER, Access

# (account id, role, requesting group) -> approvals required, per approver group.
ApprovalKey = tuple[str, str, str]
_Power = dict[ApprovalKey, int]


@dataclass(frozen=True)
class ApprovalItem:
    """Requests for (account, role) through one requesting group, and how many must approve."""

    account_id: str
    account_alias: str
    business_unit: str
    environment: str
    role: str
    requesters: str  # the group whose eligible row the request goes through
    approvals_required: int
    privileged: bool

    def __str__(self) -> str:
        flag = "  [privileged]" if self.privileged else ""
        return (
            f"{self.role} requested by {self.requesters} in {self.account_alias} "
            f"{self.account_id} [{self.business_unit}/{self.environment}], "
            f"{self.approvals_required} approval(s){flag}"
        )


@dataclass(frozen=True)
class ApprovalDiff:
    """What one approver group (or one known user, through their groups) may newly decide, and
    no longer decide. ``widened``: the gains over requests that could already be filed, or
    with fewer approvals than before (new eligible access shows in the access diff)."""

    subject: str
    gained: tuple[ApprovalItem, ...]
    lost: tuple[ApprovalItem, ...]
    widened: tuple[ApprovalItem, ...] = ()
    user_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"subject": self.subject}
        if self.user_id is not None:
            item["user_id"] = self.user_id
        item["gained"] = _approvals_json(self.gained)
        item["lost"] = _approvals_json(self.lost)
        item["widened"] = _approvals_json(self.widened)
        return item


def _approvals_json(items: Sequence[ApprovalItem]) -> list[dict[str, Any]]:
    """Items grouped by (role, requesting group, approvals, privileged), like the access diff:
    a unit's approver group gains every request of a first import."""
    grouped: dict[tuple[str, str, int, bool], list[str]] = {}
    for i in items:
        key = (i.role, i.requesters, i.approvals_required, i.privileged)
        grouped.setdefault(key, []).append(i.account_id)
    return [
        {
            "role": role,
            "requesters": requesters,
            "approvals_required": required,
            "privileged": privileged,
            "accounts": accounts,
        }
        for (role, requesters, required, privileged), accounts in grouped.items()
    ]


class _Approvals:
    """Approval power of one state over the requests of the rows in scope."""

    def __init__(self, side: Expander, groups: set[str], bus: set[str]) -> None:
        self.side = side
        self.power: dict[str, _Power] = {}
        self.requestable: set[ApprovalKey] = set()
        for group, rows in side.rows.items():
            for row in rows:
                if (
                    row.access != Access.ELIGIBLE
                    or row.role not in side.roles
                    or not (group in groups or row.business_unit in bus)
                ):
                    continue
                targets = accounts_reached(
                    row.business_unit,
                    row.environments,
                    row.accounts,
                    accounts_by_id=side.accounts,
                    accounts_of_unit=side.by_bu,
                )
                for account in targets:
                    key = (account.account_id, row.role, group)
                    self.requestable.add(key)
                    approvers = {
                        *side.bu_approvers.get(row.business_unit, ()),
                        *account.approver_groups,
                        *row.approver_groups,
                    }
                    for approver in approvers:
                        self.power.setdefault(approver, {})[key] = account.approvals_required

    def merged(self, groups: set[str]) -> _Power:
        merged: _Power = {}
        for group in groups & self.power.keys():
            merged.update(self.power[group])
        return merged

    def item(self, key: ApprovalKey, required: int) -> ApprovalItem:
        account = self.side.accounts[key[0]]
        role = self.side.roles.get(key[1])
        arn, _ = self.side.fixed(key[:2])
        return ApprovalItem(
            account_id=account.account_id,
            account_alias=account.alias,
            business_unit=account.business_unit,
            environment=account.environment,
            role=key[1],
            requesters=key[2],
            approvals_required=required,
            privileged=bool(role and role.privileged)
            or role_identity(arn) in self.side.privileged_arns,
        )


def _order(item: ApprovalItem) -> tuple[Any, ...]:
    return (
        item.business_unit,
        ENV_ORDER.get(item.environment, 9),
        item.account_alias,
        item.role,
        item.requesters,
    )


def _compare(
    before: _Approvals, after: _Approvals, subject: str, old: _Power, new: _Power
) -> ApprovalDiff | None:
    gained, lost, widened = [], [], []
    for key in old.keys() | new.keys():
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        if now is not None:
            item = after.item(key, now)
            gained.append(item)
            if (was is None and key in before.requestable) or (was is not None and now < was):
                widened.append(item)
        if was is not None:
            lost.append(before.item(key, was))
    if not (gained or lost):
        return None
    return ApprovalDiff(
        subject,
        tuple(sorted(gained, key=_order)),
        tuple(sorted(lost, key=_order)),
        tuple(sorted(widened, key=_order)),
    )


def _units_in_scope(before: Expander, after: Expander) -> set[str]:
    """Units whose approver groups, or any of whose accounts, changed."""
    bus = {
        slug
        for slug in before.bu_approvers.keys() | after.bu_approvers.keys()
        if before.bu_approvers.get(slug) != after.bu_approvers.get(slug)
    }
    for account_id in before.accounts.keys() | after.accounts.keys():
        old, new = before.accounts.get(account_id), after.accounts.get(account_id)
        if old != new:
            bus.update(a.business_unit for a in (old, new) if a is not None)
    return bus


def approval_diffs(
    before: Expander,
    after: Expander,
    groups: set[str],
    users: Sequence[tuple[int, str, set[str]]],
) -> tuple[tuple[ApprovalDiff, ...], tuple[ApprovalDiff, ...]]:
    """Approval power gained and lost, per approver group and per known user. ``groups`` are the
    requesting groups whose rows changed (``access_diff.changed_groups``)."""
    bus = _units_in_scope(before, after)
    old, new = _Approvals(before, groups, bus), _Approvals(after, groups, bus)
    group_diffs = []
    for approver in sorted(old.power.keys() | new.power.keys()):
        was, now = old.power.get(approver, {}), new.power.get(approver, {})
        diff = _compare(old, new, approver, was, now)
        if diff is not None:
            group_diffs.append(diff)
    changed = {d.subject for d in group_diffs}
    user_diffs = []
    for pk, label, held in users:
        if not held & changed:
            continue
        diff = _compare(old, new, label, old.merged(held), new.merged(held))
        if diff is not None:
            user_diffs.append(
                ApprovalDiff(diff.subject, diff.gained, diff.lost, diff.widened, user_id=pk)
            )
    return tuple(group_diffs), tuple(user_diffs)
