"""Pages of the request workflow (SPEC §3.4): /requests/ and /approvals/. Thin: check who asks,
validate the form, call one service, render or redirect with the outcome as a message."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from access_requests import queries, refusals
from access_requests.approvers import may_review_break_glass
from access_requests.forms import DecisionForm, RequestForm, RevokeForm
from access_requests.models import Approval
from access_requests.services import break_glass, grants, workflow
from federation.audit.chain import request_ip
from federation.entitlements.memo import request_entitlements
from federation.models import User
from federation.permissions import is_admin


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


@login_required
@require_http_methods(["GET", "POST"])
def my_requests(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    now = timezone.now()
    requestable = queries.list_requestable(user, now=now)
    # ``?target=<account>/<role>`` preselects a pair (the portal can link eligible rows here).
    initial = {"target": request.GET.get("target", "")}
    form = RequestForm(request.POST or None, requestable=requestable, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            account_id, role = form.account_and_role()
            try:
                created = workflow.submit_request(
                    user,
                    account_id=account_id,
                    role=role,
                    justification=form.cleaned_data["justification"],
                    duration=timedelta(minutes=form.cleaned_data["duration_minutes"]),
                    ticket=form.cleaned_data["ticket"],
                    now=now,
                    ip=request_ip(request),
                )
            except refusals.RequestRefused as refusal:
                form.add_error(None, refusal.message)
                status = refusal.status
            else:
                note = ""
                if created.unapprovable:
                    note = " Too few approvers can decide it; the admins can see it."
                messages.success(request, f"Request #{created.pk} sent to the approvers.{note}")
                return redirect("requests")
        else:
            status = 400
    context = {
        "form": form,
        "requestable": requestable,
        "requests": queries.list_my_requests(user),
        "now": now,
    }
    return render(request, "access_requests/requests.html", context, status=status)


@login_required
@require_POST
def cancel(request: HttpRequest, request_id: int) -> HttpResponse:
    try:
        workflow.cancel_request(
            request_id, actor=_user(request), now=timezone.now(), ip=request_ip(request)
        )
    except refusals.NotFound:
        # The same 404 whether the id does not exist or is outside this person's reach.
        raise Http404("no such request") from None
    except refusals.RequestRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Request #{request_id} cancelled.")
    return redirect("requests")


@login_required
@require_POST
def end_grant(request: HttpRequest, grant_id: int) -> HttpResponse:
    try:
        grants.end_grant(grant_id, actor=_user(request), now=timezone.now(), ip=request_ip(request))
    except refusals.NotFound:
        # The same 404 whether the id does not exist or is outside this person's reach.
        raise Http404("no such grant") from None
    except refusals.RequestRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(
            request, f"Grant #{grant_id} ended; the sessions it started are being denied in AWS."
        )
    return redirect("requests")


@login_required
@require_http_methods(["GET"])
def approvals(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    now = timezone.now()
    decidable = queries.list_decidable(user, now=now)
    histories = queries.list_histories(decidable, viewer=user)
    unit_groups = queries.list_unit_groups(decidable)
    context = {
        "decidable": [
            {
                "request": r,
                "history": histories.get(r.requester_id, []),
                "groups": unit_groups.get(r.pk, []),
                "votes": list(r.approvals.all()),
            }
            for r in decidable
        ],
        "unapprovable": queries.list_unapprovable(user),
        "grants": queries.list_revocable(user, now=now),
        "break_glass": [
            {"request": r, "can_review": may_review_break_glass(user, r)}
            for r in break_glass.list_unreviewed(user)
        ],
        "is_admin": is_admin(user),
        "now": now,
    }
    return render(request, "access_requests/approvals.html", context)


@login_required
@require_POST
def decide(request: HttpRequest, request_id: int) -> HttpResponse:
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or deny.")
        return redirect("approvals")
    decision = form.cleaned_data["decision"]
    try:
        decided = workflow.decide_request(
            request_id,
            actor=_user(request),
            decision=decision,
            comment=form.cleaned_data["comment"],
            now=timezone.now(),
            ip=request_ip(request),
        )
    except refusals.NotFound:
        # The same 404 whether the id does not exist or is outside this person's reach.
        raise Http404("no such request") from None
    except refusals.RequestRefused as refusal:
        messages.error(request, refusal.message)
        return redirect("approvals")
    verb = "approval" if decision == Approval.Decision.APPROVE else "denial"
    messages.success(
        request, f"Request #{decided.pk}: your {verb} is recorded; it is {decided.state}."
    )
    return redirect("approvals")


@login_required
@require_POST
def revoke(request: HttpRequest, grant_id: int) -> HttpResponse:
    form = RevokeForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        grants.revoke_grant(
            grant_id,
            actor=_user(request),
            now=timezone.now(),
            reason=reason,
            ip=request_ip(request),
        )
    except refusals.NotFound:
        # The same 404 whether the id does not exist or is outside this person's reach.
        raise Http404("no such grant") from None
    except refusals.RequestRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(
            request, f"Grant #{grant_id} revoked; its earlier sessions are being denied in AWS."
        )
    return redirect("approvals")


def navigation(request: HttpRequest) -> dict[str, object]:
    """Template context processor: the workflow sections this person can use (base.html)."""
    user = getattr(request, "user", None)
    if not isinstance(user, User):
        return {}
    now = timezone.now()
    nav = queries.get_navigation(
        user, now=now, entitlements=request_entitlements(request, user, now=now)
    )
    return {
        "nav_requests": nav.requests,
        "nav_approvals": nav.approvals,
        "nav_waiting": nav.waiting + nav.reviews,
        "nav_reviews": nav.reviews,
    }
