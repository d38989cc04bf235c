"""Access review: who can reach which role in an account (or a business unit), why, and when
they last used it. The control loop's sensor: nobody has to read mapping rows in their head.

Everything here is derived through ``resolve_entitlements``, the one definition of access, for
every known person (groups of their last sign-in) and for every mapped group (so a group whose
members never signed in still shows up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Max

from federation.audit.chain import record_event
from federation.entitlements.resolve import Entitlement, resolve_entitlements
from federation.models import Account, EntitlementAccess, GroupMapping, SessionIssuance, User
from federation.refusals import Refused


class ReviewScopeRefused(Refused):
    """The review was asked for neither or both of an account and a business unit."""

    code = "invalid_review_scope"
    status = 400
    title = "Access review"


class UnknownReviewScope(ReviewScopeRefused):
    """The account or business unit to review does not exist."""

    code = "unknown_review_scope"


@dataclass(frozen=True)
class ReviewRow:
    subject: str  # the person's email, or "group <name>" for members who never signed in
    person: bool
    account_id: str
    account_alias: str
    environment: str
    role: str
    privileged: bool
    access: EntitlementAccess
    why: str
    grant_ends_at: datetime | None
    last_used: datetime | None


def review_access(
    *, account_id: str | None = None, business_unit: str | None = None, now: datetime
) -> list[ReviewRow]:
    """Rows for one account or one business unit (exactly one must be given).

    Raises ReviewScopeRefused when neither or both are given, UnknownReviewScope for an account
    or business unit that does not exist.
    """
    if bool(account_id) == bool(business_unit):
        raise ReviewScopeRefused("Review one account or one business unit.")
    accounts = Account.objects.select_related("business_unit")
    scope = list(
        accounts.filter(account_id=account_id)
        if account_id
        else accounts.filter(business_unit__slug=business_unit)
    )
    if not scope:
        raise UnknownReviewScope(f"Unknown {'account' if account_id else 'business unit'}.")
    in_scope = {a.account_id for a in scope}
    unit_ids = {a.business_unit_id for a in scope}

    # SessionIssuance keys account and role on the AWS account id and the role name.
    last_used: dict[tuple[int, str, str], datetime] = {
        (row["user_id"], str(row["account_id"]), str(row["role_id"])): row["last"]
        for row in SessionIssuance.objects.filter(account_id__in=in_scope)
        .values("user_id", "account_id", "role_id")
        .annotate(last=Max("issued_at"))
    }
    # Only mapping rows of the scope's business units reach its accounts, and a grant counts
    # only while its holder is still eligible through one: people without any of these groups
    # cannot reach the scope and are not resolved at all.
    mapped = set(
        GroupMapping.objects.filter(business_unit_id__in=unit_ids).values_list("group", flat=True)
    )
    rows: list[ReviewRow] = []
    covered: set[str] = set()
    for user in User.objects.exclude(directory_groups=[]).order_by("email"):
        if mapped.isdisjoint(user.directory_groups):
            continue
        for e in resolve_entitlements(user.directory_groups, now=now, user_id=user.pk):
            if e.account_id in in_scope:
                covered.update(_groups(e))
                last = last_used.get((user.pk, e.account_id, e.role))
                rows.append(_row(e, user.label, person=True, why=_why(e), last_used=last))
    for group in sorted(mapped - covered):
        for e in resolve_entitlements([group], now=now):
            if e.account_id in in_scope:
                why = f"{e.access} via group {group} (no member has signed in)"
                rows.append(_row(e, f"group {group}", person=False, why=why, last_used=None))
    rows.sort(key=lambda r: (r.account_alias, r.role, not r.person, r.subject))
    return rows


def export_access_review(
    *,
    actor: User,
    account_id: str | None = None,
    business_unit: str | None = None,
    now: datetime,
    ip: str | None,
) -> list[ReviewRow]:
    """``review_access`` for a download: the export is audited (who took which scope, how many
    rows), in the same transaction as the read. Raises as ``review_access`` does."""
    with transaction.atomic(durable=True):
        rows = review_access(account_id=account_id, business_unit=business_unit, now=now)
        record_event(
            "review.export",
            actor=actor,
            account_id=account_id or "",
            ip=ip,
            now=now,
            data={"account": account_id, "business_unit": business_unit, "rows": len(rows)},
        )
    return rows


def _row(
    e: Entitlement, subject: str, *, person: bool, why: str, last_used: datetime | None
) -> ReviewRow:
    return ReviewRow(
        subject=subject,
        person=person,
        account_id=e.account_id,
        account_alias=e.account_alias,
        environment=e.environment,
        role=e.role,
        privileged=e.privileged,
        access=e.access,
        why=why,
        grant_ends_at=e.grant_ends_at,
        last_used=last_used,
    )


def _groups(e: Entitlement) -> tuple[str, ...]:
    # A grant's "via" starts with the grant itself, then the groups that keep it eligible.
    return e.via[1:] if e.grant_id is not None else e.via


def _why(e: Entitlement) -> str:
    groups = ", ".join(_groups(e))
    if e.grant_id is not None:
        ends = e.grant_ends_at
        until = f" until {ends:%Y-%m-%d %H:%M} UTC" if ends else ""
        return f"active grant #{e.grant_id}{until} (eligible via {groups})"
    return f"{e.access} via {groups}"
