"""/drift/ (SPEC §3.4): the latest drift per account and role, for admins and auditors; the roles
plan of one account or all, for admins, with "apply"; and the rollouts, each with its steps,
the second admin's approval a prod rollout waits for, and "roll back"."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from federation.models import DriftFinding, Rollout, User
from federation.permissions import can_read_audit, is_admin, require
from federation.provisioning import approval
from federation.provisioning.plan import plan_roles, render_text
from federation.refusals import Refused, refusal_page

RECENT = 50
admin_only = require(is_admin, "administrators")


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@require_GET
@require(can_read_audit, "administrators and auditors")
def drift_report(request: HttpRequest) -> HttpResponse:
    findings = DriftFinding.objects.filter(resolved_at__isnull=True).order_by(
        "account_id", "role_name"
    )
    resolved = DriftFinding.objects.filter(resolved_at__isnull=False).order_by("-resolved_at")
    return render(
        request,
        "federation/provisioning/drift.html",
        {
            "findings": findings,
            "resolved": resolved[:RECENT],
            "rollouts": Rollout.objects.order_by("-created_at", "-pk")[:10],
            "can_plan": is_admin(request.user),
        },
    )


@require_GET
@admin_only
def repair_plan(request: HttpRequest, account_id: str) -> HttpResponse:
    return _plan_page(request, [account_id])


@require_http_methods(["GET", "POST"])
@admin_only
def apply_roles(request: HttpRequest) -> HttpResponse:
    """GET: the plan of the accounts named (?account=, repeatable; all by default) with an
    apply button. POST: store it as a rollout (proposed for a second admin when it touches
    prod, else running on a worker)."""
    selection = [a for a in request.POST.getlist("account") or request.GET.getlist("account") if a]
    if request.method == "GET":
        return _plan_page(request, selection)
    try:
        rollout = approval.propose_rollout(selection, actor=_user(request), now=timezone.now())
    except Refused as refusal:
        return refusal_page(request, refusal, recorded=False)
    if rollout is None:
        messages.info(request, "Nothing to apply: every account is in sync.")
        return redirect("drift")
    return redirect("rollout", rollout_id=rollout.pk)


def _plan_page(request: HttpRequest, selection: list[str]) -> HttpResponse:
    try:
        plan = plan_roles(selection)
    except Refused as refusal:
        return refusal_page(request, refusal, recorded=False)
    return render(
        request,
        "federation/provisioning/plan.html",
        {
            "selection": selection,
            "plan_text": render_text(plan),
            "pending": any(a.applicable for a in plan.accounts),
            "unreadable": [a.account.account_id for a in plan.errors],
            "proposed": Rollout.objects.filter(state=Rollout.State.PROPOSED),
        },
    )


@require_GET
@require(can_read_audit, "administrators and auditors")
def rollout_detail(request: HttpRequest, rollout_id: int) -> HttpResponse:
    rollout = (
        Rollout.objects.select_related("requested_by", "approved_by", "rolls_back")
        .filter(pk=rollout_id)
        .first()
    )
    if rollout is None:
        raise Http404("No such rollout.")
    user = request.user
    admin = is_admin(user)
    return render(
        request,
        "federation/provisioning/rollout.html",
        {
            "rollout": rollout,
            "steps": rollout.steps.order_by("wave", "account_id"),
            "can_approve": admin and isinstance(user, User) and approval.may_approve(rollout, user),
            "is_proposer": isinstance(user, User)
            and rollout.requested_by is not None
            and rollout.requested_by.is_same_person(user),
            "can_decide": admin and rollout.state == Rollout.State.PROPOSED,
            "can_roll_back": admin and rollout.state in (Rollout.State.DONE, Rollout.State.STOPPED),
        },
    )


@require_POST
@admin_only
def rollout_decide(request: HttpRequest, rollout_id: int, action: str) -> HttpResponse:
    actor, now = _user(request), timezone.now()
    try:
        if action == "approve":
            approval.approve_rollout(rollout_id, actor=actor, now=now)
            messages.success(request, f"Rollout {rollout_id} approved: a worker is applying it.")
        elif action == "cancel":
            comment = request.POST.get("comment", "")[:500]
            approval.cancel_rollout(rollout_id, actor=actor, comment=comment, now=now)
            messages.info(request, f"Rollout {rollout_id} cancelled.")
        elif action == "rollback":
            rollback = approval.propose_rollback(rollout_id, actor=actor, now=now)
            messages.info(request, f"Rollback of rollout {rollout_id} is rollout {rollback.pk}.")
            return redirect("rollout", rollout_id=rollback.pk)
        else:
            raise Http404("Unknown action.")
    except Refused as refusal:
        if refusal.status == 404:
            raise Http404(refusal.message) from refusal
        # The rollout's page is where the outcome shows, refused or not.
        messages.error(request, refusal.message)
    return redirect("rollout", rollout_id=rollout_id)
