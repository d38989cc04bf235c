"""The portal (what a person may use or request now) and /review/ (the access review page and
its CSV export, for admins and auditors)."""

from __future__ import annotations

import csv
import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST

from federation.audit.chain import request_ip
from federation.entitlements.memo import request_entitlements
from federation.entitlements.resolve import Entitlement
from federation.entitlements.review import (
    ReviewRow,
    ReviewScopeRefused,
    export_access_review,
    review_access,
)
from federation.entitlements.usage import (
    draft_unused_removal,
    list_unused_mappings,
    window_days,
)
from federation.models import ENV_ORDER, MIN_SESSION, Account, BusinessUnit, User
from federation.permissions import can_read_audit, is_admin, require
from federation.refusals import Refused, refusal_page

# Above this many rows the portal offers its search and environment filter.
FILTER_FROM = 8
# The session lengths offered besides the longest allowed (minutes).
SESSION_CHOICES = (15, 30, 60, 120, 240, 480, 720)


@login_required
@require_GET
def portal(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    now = timezone.now()
    entitlements = request_entitlements(request, user, now=now)
    names = unit_names()
    query = request.GET.get("q", "").strip()[:100]
    environment = request.GET.get("env", "")
    token = get_token(request)
    shown = [
        e
        for e in entitlements
        if _matches(e, query, names.get(e.business_unit, "")) and environment in ("", e.environment)
    ]
    sections = [
        {
            "business_unit": bu,
            "business_unit_name": names.get(bu) or bu,
            "environments": [
                {"environment": env, "rows": _rows_html(items, now, token)}
                for env, items in groupby(bu_items, key=lambda e: e.environment)
            ],
        }
        for bu, bu_items in groupby(shown, key=lambda e: e.business_unit)
    ]
    context = {
        "sections": sections,
        "now": now,
        "total": len(entitlements),
        "shown": len(shown),
        "query": query,
        "environment": environment,
        "environments": sorted(
            {e.environment for e in entitlements}, key=lambda env: ENV_ORDER[env]
        ),
        "offer_filter": len(entitlements) > FILTER_FROM or bool(query or environment),
    }
    return render(request, "federation/portal.html", context)


# Business unit names, for display only: read at most every few seconds per process (a rename
# elsewhere shows within that), and afresh here as soon as this process saves or deletes one.
_UNIT_NAMES_SECONDS = 10.0
_unit_names_memo: list[Any] = [0.0, {}]


def unit_names() -> dict[str, str]:
    """Business unit slug -> name."""
    expires, names = _unit_names_memo
    if time.monotonic() < expires:
        return dict(names)
    names = dict(BusinessUnit.objects.values_list("slug", "name"))
    _unit_names_memo[:] = [time.monotonic() + _UNIT_NAMES_SECONDS, names]
    return dict(names)


@receiver(post_save, sender=BusinessUnit)
@receiver(post_delete, sender=BusinessUnit)
def _forget_unit_names(**_: object) -> None:
    _unit_names_memo[0] = 0.0


def _matches(entitlement: Entitlement, query: str, unit_name: str) -> bool:
    """Whether every word of ``query`` is in the row's account, role or business unit."""
    haystack = " ".join(
        (
            entitlement.account_alias,
            entitlement.account_id,
            entitlement.role,
            entitlement.business_unit,
            unit_name,
        )
    ).lower()
    return all(word in haystack for word in query.lower().split())


# A row's HTML depends on its entitlement alone unless it carries a grant (then on the time too):
# rendered once per distinct entitlement and process, with a marker where the CSRF token goes
# (the marker is secret to the process, and escaped row data cannot spell it). The memo holds
# for one compiled row template: a new one (the uncached loader of DEBUG) starts it afresh.
_ROW_TEMPLATE = "federation/portal_row.html"
_ROW_MEMO_SIZE = 5_000  # about 1.4 KB each: some 7 MB a worker at most
_CSRF_MARKER = "csrf" + secrets.token_hex(16)
_row_memo: dict[Entitlement, str] = {}
_row_memo_template: list[object] = [None]


def _rows_html(entitlements: Iterable[Entitlement], now: datetime, csrf_token: str) -> SafeString:
    """The portal rows of ``entitlements`` (portal_row.html each), as a person with
    ``csrf_token`` sees them at ``now``, as one piece of HTML."""
    template = loader.get_template(_ROW_TEMPLATE)
    compiled = getattr(template, "template", template)  # the backend's wrapper is made per call
    if _row_memo_template[0] is not compiled:
        _row_memo.clear()
        _row_memo_template[0] = compiled
    parts = []
    for entitlement in entitlements:
        memoised = entitlement.grant_ends_at is None
        try:
            html = _row_memo.get(entitlement) if memoised else None
        except TypeError:  # an unhashable field: render every time
            memoised, html = False, None
        if html is None:
            html = template.render(
                {
                    "row": _row(entitlement, now),
                    "e": entitlement,
                    "now": now,
                    "csrf_token": _CSRF_MARKER,
                }
            )
            if memoised:
                if len(_row_memo) >= _ROW_MEMO_SIZE:
                    _row_memo.clear()
                _row_memo[entitlement] = html
        parts.append(html)
    return mark_safe("".join(parts).replace(_CSRF_MARKER, csrf_token))  # noqa: S308 -- rendered


def _row(entitlement: Entitlement, now: datetime) -> dict[str, Any]:
    """An entitlement with how long a session started now would really last, and the shorter
    lengths a person may choose instead."""
    row: dict[str, Any] = {"e": entitlement, "too_late": False, "last_start": None}
    session = entitlement.max_session
    if entitlement.grant_ends_at is not None:
        # No session outlives its grant and STS issues none under 15 minutes.
        row["last_start"] = entitlement.grant_ends_at - MIN_SESSION
        row["too_late"] = now > row["last_start"]
        session = min(session, entitlement.grant_ends_at - now)
    row["session"] = session
    longest = int(session.total_seconds() // 60)
    row["lengths"] = [
        timedelta(minutes=m) for m in (*(c for c in SESSION_CHOICES if c < longest), longest)
    ]
    return row


CSV_FIELDS = (
    "subject",
    "account_id",
    "account_alias",
    "environment",
    "role",
    "privileged",
    "access",
    "why",
    "grant_ends_at",
    "last_used",
)


@require(can_read_audit, "auditors and administrators")
@require_GET
def access_review(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    account_id = request.GET.get("account", "").strip() or None
    unit = request.GET.get("bu", "").strip() or None
    context: dict[str, Any] = {
        "accounts": Account.objects.select_related("business_unit"),
        "business_units": BusinessUnit.objects.all(),
        "selected_account": account_id or "",
        "selected_bu": unit or "",
        "rows": None,
    }
    now = timezone.now()
    if not account_id and not unit:
        context["unused"] = list_unused_mappings(now=now)
        context["unused_days"] = window_days()
        context["can_draft"] = is_admin(user)
        return render(request, "federation/review.html", context)
    export = request.GET.get("format") == "csv"
    try:
        if export:
            rows = export_access_review(
                actor=user,
                account_id=account_id,
                business_unit=unit,
                now=now,
                ip=request_ip(request),
            )
        else:
            rows = review_access(account_id=account_id, business_unit=unit, now=now)
    except ReviewScopeRefused as refusal:
        return refusal_page(
            request,
            refusal,
            back_url=reverse("access-review"),
            back_label="Back to the access review",
            recorded=False,
        )
    if export:
        return _csv_response(rows)
    context["rows"] = rows
    context["query"] = request.GET.urlencode()
    return render(request, "federation/review.html", context)


@require(is_admin, "administrators")
@require_POST
def draft_removal(request: HttpRequest, mapping_id: int) -> HttpResponse:
    """One click from /review/: a mapping draft removing a row nobody used."""
    user = request.user
    assert isinstance(user, User)
    try:
        draft = draft_unused_removal(mapping_id, actor=user, now=timezone.now())
    except Refused as refusal:
        if refusal.status == 404:
            return refusal_page(request, refusal, recorded=False)
        messages.error(request, refusal.message)
        return redirect("access-review")
    return redirect("mapping-draft", draft_id=draft.pk)


def _csv_response(rows: list[ReviewRow]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="access-review.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow(
            [
                _cell(row.subject),
                row.account_id,
                row.account_alias,
                row.environment,
                row.role,
                row.privileged,
                row.access,
                _cell(row.why),
                row.grant_ends_at.isoformat() if row.grant_ends_at else "",
                row.last_used.isoformat() if row.last_used else "",
            ]
        )
    return response


def _cell(value: str) -> str:
    # Spreadsheets run cells that start with these as formulas (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
