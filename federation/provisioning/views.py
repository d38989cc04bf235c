"""/drift/ (SPEC §3.4): the latest drift per account and role, for admins and auditors; and the
repair plan of one account, for admins (it reads the account through the management role)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from federation.models import DriftFinding, Rollout
from federation.permissions import can_read_audit, is_admin, require
from federation.provisioning.plan import plan_roles, render_text
from federation.refusals import Refused, refusal_page

RECENT = 50


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
@require(is_admin, "administrators")
def repair_plan(request: HttpRequest, account_id: str) -> HttpResponse:
    try:
        plan = plan_roles([account_id])
    except Refused as refusal:
        return refusal_page(request, refusal, recorded=False)
    return render(
        request,
        "federation/provisioning/plan.html",
        {"account_id": account_id, "plan_text": render_text(plan), "pending": plan.pending},
    )
