"""Which mapping changes need a second administrator (SPEC §4 Changes, issue 12).

Decided from the plan's effects, not from which fields changed: a change is sensitive when what
someone can reach (the IAM role ARN, with its session and grant limits) changes in a prod
account or on a privileged role or ARN, when approval power over prod or privileged requests
changes, or when approval power widens anywhere (an approver group may decide requests it could
not decide before, or fewer approvals are needed). Rows that hold such effects without a mapping
row reaching them yet (a prod account, a privileged role, an account role of either, unit or
account approver groups widened) count too, so the rule does not depend on today's rows.

Harmless stays self-applicable: access gained or narrowed in dev and test accounts on roles that
are not privileged, and approval power only narrowed there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from federation.mappings.access_diff import AccessDiff
from federation.mappings.approval_diff import ApprovalDiff
from federation.mappings.document import MappingDocument
from federation.models import Access, Environment

PROD = Environment.PROD.value


def _prod_aliases(
    accounts: Iterable[tuple[str, str, str]],
) -> set[str]:
    return {alias for alias, _, env in accounts if env == PROD}


def sensitive_because(
    *,
    before: MappingDocument,
    after: MappingDocument,
    rows: Sequence[Any],
    groups: Sequence[AccessDiff],
    approvers: Sequence[ApprovalDiff],
) -> tuple[str, ...]:
    """Why applying this plan needs a second admin; empty when its author may apply it alone.

    ``rows`` are the plan's RowChange items; ``groups`` and ``approvers`` its per-group
    effects (per group, not per person: a group nobody signed in with yet still counts)."""
    privileged: set[str] = set()
    prod: set[str] = set()
    widened: set[str] = set()
    privileged_items: set[tuple[str, str | None]] = set()
    for diff in groups:
        for item in diff.gained:
            if item.privileged:
                privileged_items.add((item.role, None if item.default_arn else item.role_arn))
            if item.environment == PROD:
                prod.add(item.account_alias)
        for item in diff.lost:
            if item.environment == PROD:
                prod.add(item.account_alias)
    privileged.update(role if arn is None else f"{role} as {arn}" for role, arn in privileged_items)
    for approval in approvers:
        for entry in (*approval.gained, *approval.lost):
            if entry.environment == PROD:
                prod.add(entry.account_alias)
            if entry.privileged and entry in approval.gained:
                privileged.add(f"approval of {entry.role}")
        for entry in approval.widened:
            widened.add(f"{approval.subject} on {entry.role} in {entry.account_alias}")
    _rows_floor(before, after, rows, privileged=privileged, prod=prod, widened=widened)
    step_up: set[str] = set()
    break_glass: set[str] = set()
    for row in rows:
        old: Mapping[str, Any] = row.before or {}
        new: Mapping[str, Any] = row.after or {}
        if row.kind == "role" and _step_up_rule(old) != _step_up_rule(new):
            # Turning MFA off, or lengthening the age, weakens a role everywhere at once.
            step_up.add(str(new.get("name", old.get("name", "?"))))
        elif row.kind == "mapping" and Access.BREAK_GLASS.value in (
            old.get("access"),
            new.get("access"),
        ):
            # Break-glass skips approval: adding, widening or removing such a row is weighed.
            side = new or old
            break_glass.add(
                f"{side.get('group')} -> {side.get('role')} in {side.get('business_unit')}"
            )
    reasons = []
    if step_up:
        reasons.append(f"changes the MFA step-up of role(s): {', '.join(sorted(step_up))}")
    if break_glass:
        reasons.append(f"changes break-glass row(s): {', '.join(sorted(break_glass))}")
    if privileged:
        reasons.append(f"grants or defines privileged role(s): {', '.join(sorted(privileged))}")
    if prod:
        reasons.append(f"touches prod account(s): {', '.join(sorted(prod))}")
    if widened:
        shown = sorted(widened)
        more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
        reasons.append(f"widens approval power: {', '.join(shown[:10])}{more}")
    return tuple(reasons)


def _rows_floor(
    before: MappingDocument,
    after: MappingDocument,
    rows: Sequence[Any],
    *,
    privileged: set[str],
    prod: set[str],
    widened: set[str],
) -> None:
    accounts: dict[str, list[tuple[str, str, str]]] = {}
    for doc in (before, after):
        for a in doc.accounts:
            accounts.setdefault(a.account_id, []).append((a.alias, a.business_unit, a.environment))
    privileged_roles = {r.name for doc in (before, after) for r in doc.roles if r.privileged}
    for row in rows:
        kind = row.kind
        old: Mapping[str, Any] = row.before or {}
        new: Mapping[str, Any] = row.after or {}
        if kind == "account":
            for side in (old, new):
                if side.get("environment") == PROD:
                    prod.add(str(side.get("alias", side.get("id", "?"))))
            if old and new:
                added = set(new.get("approver_groups", ())) - set(old.get("approver_groups", ()))
                if added or new.get("approvals_required", 0) < old.get("approvals_required", 0):
                    widened.add(f"approvers of account {new.get('alias')}")
        elif kind == "role":
            for side in (old, new):
                if side.get("privileged"):
                    privileged.add(str(side.get("name", "?")))
        elif kind == "account_role":
            for side in (old, new):
                account_id = str(side.get("account", ""))
                prod |= _prod_aliases(accounts.get(account_id, ()))
                if side.get("role") in privileged_roles:
                    privileged.add(f"{side.get('role')} in {account_id}")
        elif (
            kind == "business_unit"
            and old
            and new
            and set(new.get("approver_groups", ())) - set(old.get("approver_groups", ()))
        ):
            widened.add(f"approvers of business unit {new.get('slug')}")


def _step_up_rule(side: Mapping[str, Any]) -> tuple[bool, Any]:
    if not side:
        return (False, None)
    return (bool(side.get("require_mfa")), side.get("max_auth_age_minutes"))
