"""``roles_plan``: the difference between the roles the tables call for and the roles each account
holds, read through the management role. Changes nothing.

Only roles carrying our managed tag are ever planned for change or deletion: a role with a wanted
name but without the tag is a conflict, reported and left alone (SECURITY.md §7).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings

from federation.aws import iam, iam_roles
from federation.mappings.document import AccountRow, MappingDocument
from federation.mappings.state import get_current_document
from federation.models import ENV_ORDER
from federation.provisioning import trust
from federation.provisioning.desired import MANAGED_TAG, MANAGED_VALUE, DesiredRole, desired_roles
from federation.provisioning.retired import retired_accounts
from federation.refusals import Refused


class UnknownAccount(Refused):
    code = "provisioning.unknown_account"
    status = 404


@dataclass(frozen=True)
class RoleChange:
    """One role to create, update or delete, or a conflict we leave alone."""

    action: str  # create, update, delete, conflict
    account_id: str
    name: str
    desired: DesiredRole | None = None
    actual: iam_roles.IamRole | None = None
    trust_diff: tuple[str, ...] = ()
    attach: tuple[str, ...] = ()
    detach: tuple[str, ...] = ()
    session: tuple[int, int] | None = None  # (in IAM, wanted)
    tags: tuple[tuple[str, str, str], ...] = ()  # (key, in IAM, wanted)
    notes: tuple[str, ...] = ()

    @property
    def differences(self) -> tuple[str, ...]:
        """What differs, one short phrase each (drift reports and the audit)."""
        found = list(self.notes)
        if self.action == "create":
            found.append("missing")
        if self.action == "delete":
            found.append("managed role the tables no longer call for")
        if self.trust_diff:
            found.append("trust policy differs")
        found += [f"policy {arn} not attached" for arn in self.attach]
        found += [f"other policy {arn} attached" for arn in self.detach]
        if self.session:
            found.append(f"session length {self.session[0]}s, wanted {self.session[1]}s")
        found += [f"tag {key}={have!r}, wanted {want!r}" for key, have, want in self.tags]
        return tuple(found)


@dataclass(frozen=True)
class AccountPlan:
    account: AccountRow
    desired: tuple[DesiredRole, ...]
    changes: tuple[RoleChange, ...] = ()
    error: str = ""
    # The account left the tables; its managed roles are planned for deletion (retired.py).
    retired: bool = False
    # IAM's RoleLastUsed of each wanted role the account holds, by logical role.
    last_used: dict[str, datetime] = field(default_factory=dict)

    @property
    def applicable(self) -> tuple[RoleChange, ...]:
        return tuple(c for c in self.changes if c.action != "conflict")


@dataclass(frozen=True)
class RolesPlan:
    version: int
    broker_arn: str
    accounts: tuple[AccountPlan, ...] = field(default=())

    @property
    def errors(self) -> tuple[AccountPlan, ...]:
        """Accounts of the tables that could not be read (a retired account that cannot be
        reached any more is shown, but blocks nothing)."""
        return tuple(a for a in self.accounts if a.error and not a.retired)

    @property
    def pending(self) -> bool:
        return any(a.changes for a in self.accounts)


def _lines(document: dict[str, Any]) -> list[str]:
    return json.dumps(trust.normalise(document), indent=2, sort_keys=True).splitlines()


def compare(
    desired: Sequence[DesiredRole], actual: Sequence[iam_roles.IamRole]
) -> list[RoleChange]:
    """The changes that bring ``actual`` (one account's roles) to ``desired``."""
    by_name = {role.name.lower(): role for role in actual}
    wanted = {role.name.lower() for role in desired}
    changes: list[RoleChange] = []
    for want in desired:
        have = by_name.get(want.name.lower())
        if have is None:
            changes.append(RoleChange("create", want.account_id, want.name, desired=want))
            continue
        if MANAGED_TAG not in have.tags:
            changes.append(
                RoleChange(
                    "conflict",
                    want.account_id,
                    have.name,
                    desired=want,
                    actual=have,
                    notes=(f"a role named {have.name} exists without our {MANAGED_TAG} tag",),
                )
            )
            continue
        if have.path != want.path:
            changes.append(
                RoleChange(
                    "conflict",
                    want.account_id,
                    have.name,
                    desired=want,
                    actual=have,
                    notes=(f"the role is at path {have.path}, wanted {want.path}",),
                )
            )
            continue
        notes = []
        stale = [p for p in trust.principals(have.trust_policy) if trust.UNIQUE_ID.match(p)]
        if stale:
            notes.append(
                f"the trust policy names {', '.join(stale)} where a principal was: that "
                "principal was deleted (a recreated broker role no longer matches)"
            )
        old, new = _lines(have.trust_policy), _lines(want.trust_policy)
        diff = (
            ()
            if old == new
            else tuple(difflib.unified_diff(old, new, "in IAM", "wanted", lineterm=""))
        )
        attached = set(have.attached_policies)
        session = (have.max_session_seconds, want.max_session_seconds)
        tag_value = have.tags.get(MANAGED_TAG, "")
        change = RoleChange(
            "update",
            want.account_id,
            have.name,
            desired=want,
            actual=have,
            trust_diff=diff,
            attach=tuple(p for p in want.policies if p not in attached),
            detach=tuple(sorted(attached - set(want.policies))),
            session=session if session[0] != session[1] else None,
            tags=((MANAGED_TAG, tag_value, MANAGED_VALUE),) if tag_value != MANAGED_VALUE else (),
            notes=tuple(notes),
        )
        if change.differences:
            changes.append(change)
    for have in actual:
        if MANAGED_TAG in have.tags and have.name.lower() not in wanted:
            account_id = have.arn.split(":")[4]
            changes.append(RoleChange("delete", account_id, have.name, actual=have))
    return changes


def plan_account(
    account: AccountRow, desired: Sequence[DesiredRole], *, retired: bool = False
) -> AccountPlan:
    """Read one account and compare; an unreadable account is an ``error``, never raised."""
    try:
        actual = iam_roles.read_account_roles(account.account_id)
    except iam.IamCallFailed as exc:
        return AccountPlan(account, tuple(desired), error=str(exc), retired=retired)
    held = {role.name.lower(): role for role in actual}
    last_used: dict[str, datetime] = {}
    for want in desired:
        have = held.get(want.name.lower())
        if have is not None and have.last_used is not None:
            last_used[want.logical_role] = have.last_used
    changes = tuple(compare(desired, actual))
    return AccountPlan(account, tuple(desired), changes, "", retired, last_used)


def select_accounts(
    document: MappingDocument, selection: Sequence[str], retired: Sequence[AccountRow] = ()
) -> list[AccountRow]:
    """The accounts (of the document, and ``retired`` ones) named by id or alias (all when none
    named), canary first, then by environment; raises UnknownAccount naming what matched
    nothing."""
    accounts = [*document.accounts, *retired]
    if selection:
        known = {a.account_id: a for a in accounts} | {a.alias: a for a in accounts}
        missing = [name for name in selection if name not in known]
        if missing:
            raise UnknownAccount(f"no account with id or alias {', '.join(map(repr, missing))}")
        accounts = list({known[name].account_id: known[name] for name in selection}.values())
    return sorted(accounts, key=wave_key)


def wave_key(account: AccountRow) -> tuple[int, str]:
    """Canary accounts first, then dev, test, prod (SPEC §3.2 roles_apply)."""
    return (0 if account.canary else 1 + ENV_ORDER.get(account.environment, 3), account.account_id)


def plan_roles(
    selection: Sequence[str] = (),
    *,
    document: MappingDocument | None = None,
    version: int | None = None,
) -> RolesPlan:
    """Plan every selected account of ``document`` (default: the tables now), reading accounts
    in parallel (PROVISIONING_CONCURRENCY). Raises ProvisioningInvalid before any IAM call when
    a wanted role breaks IAM's limits, and UnknownAccount for an unknown selection."""
    retired: list[AccountRow] = []
    if document is None:
        version, document = get_current_document()
        retired = retired_accounts([a.account_id for a in document.accounts])
    broker = trust.broker_principal_arn()
    desired = desired_roles(document, version=version or 0, broker_arn=broker)
    accounts = select_accounts(document, selection, retired)
    gone = {a.account_id for a in retired}

    def plan_one(account: AccountRow) -> AccountPlan:
        wanted = desired.get(account.account_id, [])
        return plan_account(account, wanted, retired=account.account_id in gone)

    with ThreadPoolExecutor(max_workers=max(1, settings.PROVISIONING_CONCURRENCY)) as pool:
        plans = list(pool.map(plan_one, accounts))
    return RolesPlan(version or 0, broker, tuple(plans))


def render_text(plan: RolesPlan) -> str:
    lines = [f"Roles plan against mapping version {plan.version}; trusted broker {plan.broker_arn}"]
    for account_plan in plan.accounts:
        account = account_plan.account
        canary = ", canary" if account.canary else ""
        gone = ", no longer in the tables" if account_plan.retired else ""
        lines.append(
            f"account {account.account_id} ({account.alias}, {account.environment}{canary}{gone}):"
        )
        if account_plan.error and account_plan.retired:
            lines.append(
                f"  UNREACHABLE, its managed roles cannot be checked: {account_plan.error}"
            )
            continue
        if account_plan.error:
            lines.append(f"  ERROR {account_plan.error}")
            continue
        if not account_plan.changes:
            lines.append("  in sync")
        for change in account_plan.changes:
            lines.extend(_change_lines(change))
    return "\n".join(lines) + "\n"


def _change_lines(change: RoleChange) -> list[str]:
    sign = {"create": "+", "update": "~", "delete": "-", "conflict": "!"}[change.action]
    arn = change.desired.arn if change.desired else change.actual.arn if change.actual else ""
    head = {
        "create": "create",
        "update": "change",
        "delete": "delete",
        "conflict": "conflict (left alone)",
    }[change.action]
    lines = [f"  {sign} {head} role {change.name} ({arn})"]
    if change.action == "create" and change.desired:
        want = change.desired
        lines.append(f"      session {want.max_session_seconds}s")
        lines += [f"      + policy {arn}" for arn in want.policies]
        lines.append("      trust policy:")
        lines += [f"        {line}" for line in _lines(want.trust_policy)]
        return lines
    if change.action == "delete" and change.actual:
        lines.append("      managed by us, and no mapping row reaches it any more")
        return lines
    lines += [f"      ! {note}" for note in change.notes]
    if change.trust_diff:
        lines.append("      trust policy:")
        lines += [f"        {line}" for line in change.trust_diff]
    lines += [f"      + policy {arn}" for arn in change.attach]
    lines += [f"      - policy {arn}" for arn in change.detach]
    if change.session:
        lines.append(f"      session {change.session[0]}s -> {change.session[1]}s")
    lines += [f"      tag {k}: {have!r} -> {want!r}" for k, have, want in change.tags]
    return lines
