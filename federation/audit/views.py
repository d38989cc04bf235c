"""The audit log for auditors and admins: filter, page, export (SPEC §3.4 /audit/). Read-only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from access_requests.services.break_glass import list_unreviewed
from federation.audit.chain import record_event, request_ip, verify_chain_incrementally
from federation.models import AuditEvent, User
from federation.permissions import can_read_audit, require

PAGE_SIZE = 50


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=320, label="Actor (email or name)")
    event_type = forms.CharField(
        required=False, max_length=64, label="Event type (prefix, e.g. signin.)"
    )
    account = forms.RegexField(
        required=False,
        regex=r"^[0-9]{12}$",
        label="Account id",
        error_messages={"invalid": "An account id is exactly 12 digits."},
    )
    since = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    until = forms.DateTimeField(
        required=False,
        label="Until (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("'From' must be earlier than 'Until'.")
        return data

    def filtered(self) -> QuerySet[AuditEvent]:
        data = self.cleaned_data
        events = AuditEvent.objects.order_by("-seq")
        if data.get("actor"):
            events = events.filter(actor__iexact=data["actor"].strip())
        if data.get("event_type"):
            events = events.filter(event_type__startswith=data["event_type"].strip())
        if data.get("account"):
            events = events.filter(account_id=data["account"])
        if data.get("since"):
            events = events.filter(at__gte=data["since"])
        if data.get("until"):
            events = events.filter(at__lte=data["until"])
        return events


@require(can_read_audit, "auditors and administrators")
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    events: list[AuditEvent] = []
    pending: list[AuditEvent] = []
    pending_count = 0
    next_before = None
    if form.is_bound and not form.is_valid():
        status = 400
    else:
        status = 200
        if not form.is_bound:
            form = AuditFilterForm({})
            form.is_valid()
        page = form.filtered().filter(seq__isnull=False)
        if form.cleaned_data.get("before"):
            page = page.filter(seq__lt=form.cleaned_data["before"])
        # Committed events the sequencer has not placed yet: shown apart, with no number or hash.
        waiting = form.filtered().filter(seq__isnull=True).order_by("-id")
        pending = list(waiting[:PAGE_SIZE])
        pending_count = waiting.count() if len(pending) == PAGE_SIZE else len(pending)
        events = list(page[: PAGE_SIZE + 1])
        if len(events) > PAGE_SIZE:
            events = events[:PAGE_SIZE]
            next_before = events[-1].seq
    query = request.GET.copy()
    query.pop("before", None)
    # SPEC §4 Break-glass: flagged here until someone other than its user has reviewed it.
    unreviewed = list_unreviewed()
    flagged = {r.pk for r in unreviewed}
    return render(
        request,
        "federation/audit.html",
        {
            "form": form,
            "events": [
                (e, json.dumps(e.data, indent=2, sort_keys=True), _flagged(e, flagged))
                for e in events
            ],
            "unreviewed_break_glass": unreviewed,
            "chain": verify_chain_incrementally(),
            "pending": [(e, json.dumps(e.data, indent=2, sort_keys=True)) for e in pending],
            "pending_count": pending_count,
            "next_before": next_before,
            "query": query.urlencode(),
        },
        status=status,
    )


def _jsonl(events: QuerySet[AuditEvent]) -> Iterator[str]:
    for event in events.iterator(chunk_size=1000):
        yield (
            json.dumps(
                {
                    "seq": event.seq,
                    "at": event.at.isoformat(),
                    "event_type": event.event_type,
                    "actor": event.actor,
                    "account_id": event.account_id,
                    "target": event.target,
                    "ip": event.ip,
                    "data": event.data,
                    "prev_hash": event.prev_hash,
                    "hash": event.hash,
                },
                sort_keys=True,
            )
            + "\n"
        )


@require(can_read_audit, "auditors and administrators")
@require_GET
def audit_export(request: HttpRequest) -> HttpResponseBase:
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Invalid filter: " + "; ".join(str(e) for errs in form.errors.values() for e in errs),
            status=400,
            content_type="text/plain",
        )
    assert isinstance(request.user, User)
    record_event(
        "audit.export",
        actor=request.user,
        ip=request_ip(request),
        data={"filters": {k: str(v) for k, v in form.cleaned_data.items() if v}},
        now=timezone.now(),
    )
    response = StreamingHttpResponse(
        _jsonl(form.filtered().filter(seq__isnull=False).order_by("seq")),
        content_type="application/x-ndjson",
    )
    response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
    return response


def _flagged(event: AuditEvent, unreviewed: set[int]) -> bool:
    """A break-glass activation still waiting for its review."""
    return event.event_type == "break_glass.activated" and event.data.get("request_id") in (
        unreviewed
    )
