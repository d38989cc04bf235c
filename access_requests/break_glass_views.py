"""Break-glass pages (SPEC §4): activate from the portal, review on /approvals/. Thin: check who
asks, read the form, call one service (access_requests/services/break_glass.py)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from access_requests import refusals
from access_requests.services import break_glass
from federation.audit.chain import request_ip
from federation.models import User
from federation.refusals import refusal_page


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _minutes(value: str | None) -> timedelta | None:
    if not value:
        return None
    try:
        minutes = int(value)
    except ValueError:
        minutes = 0
    # Out of range (or not a number): zero, which the service refuses with a clear message.
    return timedelta(minutes=minutes if 0 < minutes <= 100_000 else 0)


@login_required
@require_POST
def activate(request: HttpRequest) -> HttpResponse:
    """POST account, role, justification [, minutes]: the grant at once, back to the portal."""
    try:
        grant = break_glass.activate_break_glass(
            _user(request),
            account_id=request.POST.get("account", ""),
            role=request.POST.get("role", ""),
            justification=request.POST.get("justification", ""),
            duration=_minutes(request.POST.get("minutes")),
            now=timezone.now(),
            ip=request_ip(request),
        )
    except refusals.RequestRefused as refusal:
        return refusal_page(request, refusal)
    messages.warning(
        request,
        f"Break-glass active until {grant.ends_at:%H:%M} UTC: the approvers and security "
        "contacts have been notified and will review it.",
    )
    return redirect("portal")


@login_required
@require_POST
def review(request: HttpRequest, request_id: int) -> HttpResponse:
    try:
        break_glass.review_break_glass(
            request_id,
            actor=_user(request),
            comment=request.POST.get("comment", ""),
            now=timezone.now(),
            ip=request_ip(request),
        )
    except refusals.NotFound:
        raise Http404("no such break-glass activation") from None
    except refusals.RequestRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Break-glass activation #{request_id} reviewed.")
    return redirect("approvals")
