"""Access nobody uses, closing the control loop (issue #13 §5): the mapping rows whose reach
nobody used for ``UNUSED_ACCESS_DAYS``, and a one-click draft that removes such a row.

A row counts as used when, within the window, IAM saw its role used in any account it reaches
(``RoleLastUsed``, kept by every drift check) or the broker issued a session for one of those
(account, role) pairs to someone who is in the row's group now. IAM cannot tell which group a
session came through, so a role used through one row keeps every row reaching it "used": the
list errs towards keeping access, never towards removing access someone uses. A row counts only
if the tables already held it when the window began (a row added last week is not "unused for
90 days").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max

from federation.entitlements.scope import accounts_reached
from federation.mappings.drafts import item_key, propose_edit
from federation.models import (
    Account,
    GroupMapping,
    MappingDraft,
    MappingVersion,
    RoleLastUsed,
    SessionIssuance,
    User,
)
from federation.refusals import Refused


class StillInUse(Refused):
    """The row was used (or changed) since the list was shown; no draft was made."""

    code = "review.still_in_use"
    status = 409


class UnknownMapping(Refused):
    code = "review.unknown_mapping"
    status = 404


@dataclass(frozen=True)
class UnusedMapping:
    mapping: GroupMapping
    accounts: tuple[Account, ...]
    last_used: datetime | None  # the latest use known, however old; None: never

    @property
    def summary(self) -> str:
        when = f"last used {self.last_used:%Y-%m-%d}" if self.last_used else "never used"
        return f"{self.mapping.group} → {self.mapping.role.name} ({when})"


@dataclass(frozen=True)
class _Placed:
    account: Account

    @property
    def business_unit(self) -> str:
        return self.account.business_unit.slug

    @property
    def environment(self) -> str:
        return self.account.environment


def _row_key(row: GroupMapping) -> tuple[object, ...]:
    return item_key(
        "mappings",
        {
            "group": row.group,
            "role": row.role.name,
            "business_unit": row.business_unit.slug,
            "environments": list(row.environments),
            "accounts": list(row.accounts),
        },
    )


def window_days() -> int:
    return max(1, settings.UNUSED_ACCESS_DAYS)


def list_unused_mappings(*, now: datetime, days: int | None = None) -> list[UnusedMapping]:
    """The mapping rows nobody used in the last ``days`` (default UNUSED_ACCESS_DAYS), that the
    tables held when that window began, oldest use first (never used first of all)."""
    cutoff = now - timedelta(days=days or window_days())
    before = MappingVersion.objects.filter(created_at__lte=cutoff).order_by("-number").first()
    if before is None:
        return []  # the tables are younger than the window
    held_then = {item_key("mappings", item) for item in before.document.get("mappings", [])}

    placed = [_Placed(a) for a in Account.objects.select_related("business_unit")]
    by_id = {p.account.account_id: p for p in placed}
    of_unit: dict[str, list[_Placed]] = defaultdict(list)
    for p in placed:
        of_unit[p.business_unit].append(p)

    iam_use = {
        (u.account_id, u.role): u.last_used
        for u in RoleLastUsed.objects.only("account_id", "role", "last_used")
    }
    # Our issuance, per (account, role) and person: who used what, and when last.
    issued: dict[tuple[str, str], list[tuple[int, datetime]]] = defaultdict(list)
    for use in (
        SessionIssuance.objects.values("account_id", "role_id", "user_id")
        .annotate(last=Max("issued_at"))
        .order_by()
    ):
        issued[(str(use["account_id"]), str(use["role_id"]))].append((use["user_id"], use["last"]))
    groups = {
        pk: set(found)
        for pk, found in User.objects.filter(
            pk__in={user for uses in issued.values() for user, _ in uses}
        ).values_list("pk", "directory_groups")
    }

    unused: list[UnusedMapping] = []
    for row in GroupMapping.objects.select_related("role", "business_unit"):
        if _row_key(row) not in held_then:
            continue
        reached = accounts_reached(
            row.business_unit.slug,
            row.environments,
            row.accounts,
            accounts_by_id=by_id,
            accounts_of_unit=of_unit,
        )
        uses: list[datetime] = []
        for p in reached:
            pair = (p.account.account_id, row.role.name)
            if pair in iam_use:
                uses.append(iam_use[pair])
            uses += [at for user, at in issued.get(pair, ()) if row.group in groups.get(user, ())]
        last = max(uses, default=None)
        if reached and (last is None or last < cutoff):
            unused.append(UnusedMapping(row, tuple(p.account for p in reached), last))
    unused.sort(key=lambda u: (u.last_used is not None, u.last_used or now, str(u.mapping)))
    return unused


def draft_unused_removal(mapping_id: int, *, actor: User, now: datetime) -> MappingDraft:
    """A normal mapping draft removing the row ``mapping_id`` (its plan, and a second admin when
    the change is sensitive, as for any draft). Raises UnknownMapping, StillInUse when the row
    is not (or no longer) on the unused list, and DraftRefused as ``propose_edit`` does."""
    row = GroupMapping.objects.select_related("role", "business_unit").filter(pk=mapping_id).first()
    if row is None:
        raise UnknownMapping("That mapping row does not exist (any more).")
    days = window_days()
    found = [u for u in list_unused_mappings(now=now, days=days) if u.mapping.pk == row.pk]
    if not found:
        raise StillInUse(
            f"The row {row.group} → {row.role.name} was used in the last {days} days (or is too "
            "new to tell): no draft was made."
        )
    (entry,) = found
    last = f"last used {entry.last_used:%Y-%m-%d}" if entry.last_used else "never used"
    return propose_edit(
        "mappings",
        actor=actor,
        old_key=_row_key(row),
        new_item=None,
        summary=f"Remove unused {row.group} → {row.role.name} in {row.business_unit.slug}",
        reason=f"Access review: nobody used it for {days} days ({last}).",
        now=now,
    )
