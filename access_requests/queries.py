"""Read-only queries behind the request and approval pages and the sweeps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F, Prefetch, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from access_requests.approvers import is_approver, may_review_break_glass, may_revoke
from access_requests.models import AccessRequest, Approval, Grant
from federation.entitlements.resolve import Entitlement, resolve_entitlements
from federation.models import Account, BusinessUnit, EntitlementAccess, GroupMapping, User
from federation.permissions import is_admin
from federation.rawsql import prepared_cursor

State = AccessRequest.State


def list_requestable(user: User, *, now: datetime) -> list[Entitlement]:
    """The (account, role) pairs ``user`` may request now: eligible, not standing, not granted,
    and not already waiting in a pending request of theirs (a second one would be refused)."""
    entitlements = resolve_entitlements(user.directory_groups, now=now, user_id=user.pk)
    pending = set(
        AccessRequest.objects.filter(requester=user, state=State.PENDING).values_list(
            "account__account_id", "role__name"
        )
    )
    return [
        e
        for e in entitlements
        if e.access == EntitlementAccess.ELIGIBLE and (e.account_id, e.role) not in pending
    ]


def list_my_requests(user: User) -> QuerySet[AccessRequest]:
    """My requests, newest first, with the votes so far (who, what, their comment) and the
    grant with who revoked it: what a requester is told about their own request."""
    return (
        AccessRequest.objects.filter(requester=user)
        .select_related("account__business_unit", "role", "grant__revoked_by")
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("approver"))
        )
        .order_by("-created_at")
    )


def _pending_with_relations() -> QuerySet[AccessRequest]:
    return (
        AccessRequest.objects.filter(state=State.PENDING)
        .select_related("requester", "account__business_unit", "role", "mapping")
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("approver"))
        )
    )


def list_decidable(user: User, *, now: datetime) -> list[AccessRequest]:
    """Pending, undecided-in-time requests ``user`` may decide and has not voted on yet through
    any of their identities."""
    return [
        r
        for r in _pending_with_relations().filter(decide_by__gt=now).order_by("created_at")
        if is_approver(user, r)
        and not any(a.approver.is_same_person(user) for a in r.approvals.all())
    ]


def list_unapprovable(user: User) -> list[AccessRequest]:
    """For admins only: pending requests flagged as having too few possible approvers."""
    if not is_admin(user):
        return []
    return list(_pending_with_relations().filter(unapprovable=True).order_by("created_at"))


def list_revocable(user: User, *, now: datetime) -> list[Grant]:
    """Active grants ``user`` may revoke: all of them for admins, else those they could approve."""
    grants = (
        Grant.objects.filter(state=Grant.State.ACTIVE, ends_at__gt=now)
        .select_related(
            "user", "account", "role", "request__account__business_unit", "request__mapping"
        )
        .order_by("ends_at")
    )
    return [g for g in grants if may_revoke(user, g)]


def list_histories(
    requests: Iterable[AccessRequest], *, viewer: User, limit: int = 5
) -> dict[int, list[AccessRequest]]:
    """Each requester's latest ``limit`` decided or ended requests that ``viewer`` may see
    (``may_see_request``: a unit or account they approve for, everything for an admin), for the
    approver's context, keyed by requester id; one query however many requests are shown."""
    requester_ids = {r.requester_id for r in requests}
    if not requester_ids:
        return {}
    rows = (
        AccessRequest.objects.filter(requester_id__in=requester_ids)
        .filter(~Q(state=State.PENDING))
        .filter(_within_reach(viewer))
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=F("requester_id"),
                order_by=[F("created_at").desc(), F("pk").desc()],
            )
        )
        .filter(rank__lte=limit)
        .select_related("account", "role")
        .order_by("requester_id", "-created_at", "-pk")
    )
    histories: dict[int, list[AccessRequest]] = {}
    for row in rows:
        histories.setdefault(row.requester_id, []).append(row)
    return histories


def list_unit_groups(requests: Iterable[AccessRequest]) -> dict[int, list[str]]:
    """Each request's requester groups that map rows in the request's own business unit, keyed
    by request id: what an approver of that unit is shown (memberships elsewhere are another
    unit's business). One query however many requests are shown."""
    requests = list(requests)
    units = {r.account.business_unit_id for r in requests}
    mapped: dict[int, set[str]] = {}
    for unit, group in GroupMapping.objects.filter(business_unit_id__in=units).values_list(
        "business_unit_id", "group"
    ):
        mapped.setdefault(unit, set()).add(group)
    return {
        r.pk: sorted(
            str(g)
            for g in r.requester.directory_groups
            if str(g) in mapped.get(r.account.business_unit_id, set())
        )
        for r in requests
    }


@dataclass(frozen=True)
class Navigation:
    """Which workflow sections a person can use, and how much waits for them (requests to
    decide and break-glass activations to review)."""

    requests: bool
    approvals: bool
    waiting: int
    reviews: int = 0


def get_navigation(
    user: User, *, now: datetime, entitlements: Iterable[Entitlement] | None = None
) -> Navigation:
    """Requests: for people eligible for something or with requests of their own. Approvals: for
    admins and members of any approver group, with the count of requests waiting for them.
    ``entitlements``: the user's, resolved at ``now``, when the caller has them already."""
    accounts, rows = _approver_scope(user)
    approves = is_admin(user) or bool(accounts or rows)
    if entitlements is None:
        entitlements = resolve_entitlements(user.directory_groups, now=now, user_id=user.pk)
    eligible = any(e.access == EntitlementAccess.ELIGIBLE for e in entitlements)
    return Navigation(
        requests=eligible or AccessRequest.objects.filter(requester=user).exists(),
        approvals=approves,
        waiting=len(list_decidable(user, now=now)) if approves else 0,
        reviews=len(list_reviewable_break_glass(user)) if approves else 0,
    )


def list_reviewable_break_glass(user: User) -> list[AccessRequest]:
    """Break-glass activations ``user`` may review now (never their own): an approver of the
    account or an admin, none reviewed yet."""
    pending = (
        AccessRequest.objects.filter(break_glass=True, reviewed_at__isnull=True)
        .select_related("requester", "account__business_unit", "mapping")
        .order_by("created_at")
    )
    return [r for r in pending if may_review_break_glass(user, r)]


def _within_reach(viewer: User) -> Q:
    """The requests ``viewer`` approves for, as a filter: the same rule as ``may_see_request``
    (business unit, account or mapping row approver groups), judged in Python over the few
    units, accounts and rows so it holds on SQLite (the demo) as on PostgreSQL."""
    if is_admin(viewer):
        return Q()
    accounts, rows = _approver_scope(viewer)
    return Q(account_id__in=accounts) | Q(mapping_id__in=rows)


def _approver_scope(viewer: User) -> tuple[list[int], list[int]]:
    """The accounts and mapping rows whose approver groups ``viewer`` is in."""
    groups = {str(g) for g in viewer.directory_groups}

    def meets(approver_groups: object) -> bool:
        return isinstance(approver_groups, list) and bool(
            groups & {str(g) for g in approver_groups}
        )

    if not groups:
        return [], []  # in no group, so in no approver group: nothing to read
    if connection.vendor == "postgresql":
        # Every portal page asks this: narrow in the database (jsonb ?|, an element of the list
        # equal to one of the groups) instead of reading every account and mapping row, in one
        # statement for both (issue 19). Only a narrowing: ``meets`` below still decides, as on
        # SQLite, where it reads them all.
        return _approver_scope_postgresql(sorted(groups), meets)
    candidates = Account.objects.select_related("business_unit").only(
        "pk", "approver_groups", "business_unit__approver_groups"
    )
    accounts = [
        a.pk
        for a in candidates
        if meets(a.business_unit.approver_groups) or meets(a.approver_groups)
    ]
    rows = [
        m.pk for m in GroupMapping.objects.only("pk", "approver_groups") if meets(m.approver_groups)
    ]
    return accounts, rows


def _approver_scope_postgresql(
    wanted: list[str], meets: Callable[[object], bool]
) -> tuple[list[int], list[int]]:
    account, unit, mapping = (
        connection.ops.quote_name(m._meta.db_table) for m in (Account, BusinessUnit, GroupMapping)
    )
    # Table names from the models, quoted; the groups are parameters.
    sql = (
        f"SELECT 'a', a.id, a.approver_groups, u.approver_groups FROM {account} a "  # noqa: S608
        f"JOIN {unit} u ON u.id = a.business_unit_id "
        "WHERE u.approver_groups ?| %(wanted)s OR a.approver_groups ?| %(wanted)s "
        f"UNION ALL SELECT 'm', m.id, m.approver_groups, NULL FROM {mapping} m "
        "WHERE m.approver_groups ?| %(wanted)s"
    )
    accounts: list[int] = []
    rows: list[int] = []
    with prepared_cursor() as cursor:  # every portal page: planned once per connection
        cursor.execute(sql, {"wanted": wanted})
        for kind, pk, own_json, units_json in cursor.fetchall():
            # Django reads jsonb as text (JSONField decodes it); so does this raw cursor.
            own, units = _json(own_json), _json(units_json)
            if kind == "a" and (meets(units) or meets(own)):
                accounts.append(pk)
            elif kind == "m" and meets(own):
                rows.append(pk)
    return accounts, rows


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def list_owed_revocations(*, now: datetime, older_than: timedelta) -> list[int]:
    """Revoked grants whose deny policy IAM has not confirmed, revoked before ``now - older_than``
    (younger ones still have their first task in flight)."""
    return list(
        Grant.objects.filter(
            state=Grant.State.REVOKED,
            revocation_applied_at__isnull=True,
            revoked_at__lte=now - older_than,
        )
        .order_by("revoked_at")
        .values_list("pk", flat=True)[:500]
    )
