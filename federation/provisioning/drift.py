"""``drift_check``: the sensor of the control loop. Reads every account, compares with the tables
and keeps one finding per drifted role from the check that first saw it to the one that no
longer does. A new finding and a resolved one are each audited once, not on every run, and new
findings owe the admins one mail and webhook post per check (``notices``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from access_requests.services import effects
from federation.audit.chain import record_event
from federation.models import DriftFinding, RoleLastUsed
from federation.provisioning import notices
from federation.provisioning.plan import AccountPlan, RolesPlan, plan_roles


@dataclass(frozen=True)
class DriftReport:
    plan: RolesPlan
    open: tuple[DriftFinding, ...]
    new: int
    resolved: int

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(f"account {a.account.account_id}: {a.error}" for a in self.plan.errors)


def check_drift(selection: Sequence[str] = (), *, now: datetime) -> DriftReport:
    """Record the drift of the selected accounts (all by default). An account that cannot be
    read keeps its findings as they were (nothing is resolved by not looking)."""
    plan = plan_roles(selection)
    new = resolved = 0
    readable = [a for a in plan.accounts if not a.error]
    with transaction.atomic(durable=True):
        # One locked read of every open finding of the accounts read, not one per account.
        findings = DriftFinding.objects.select_for_update().filter(resolved_at__isnull=True)
        if selection:
            findings = findings.filter(account_id__in=[a.account.account_id for a in readable])
        else:
            # A full check also resolves the findings of accounts it no longer reads at all
            # (left the tables, and none of our roles remain there).
            findings = findings.exclude(
                account_id__in=[a.account.account_id for a in plan.accounts if a.error]
            )
        known: dict[tuple[str, str], DriftFinding] = {
            (f.account_id, f.role_name.lower()): f for f in findings
        }
        seen: list[DriftFinding] = []
        found: list[int] = []
        for account_plan in readable:
            account = account_plan.account
            for change in account_plan.changes:
                differences = list(change.differences)
                finding = known.pop((account.account_id, change.name.lower()), None)
                if finding is None:
                    new += 1
                    finding = DriftFinding.objects.create(
                        account_id=account.account_id,
                        account_alias=account.alias,
                        role_name=change.name,
                        action=change.action,
                        differences=differences,
                        first_seen=now,
                        last_seen=now,
                    )
                    _audit("provisioning.drift_found", finding, now=now)
                    found.append(finding.pk)
                    continue
                finding.action, finding.differences, finding.last_seen = (
                    change.action,
                    differences,
                    now,
                )
                seen.append(finding)
        DriftFinding.objects.bulk_update(seen, ["action", "differences", "last_seen"])
        for finding in known.values():
            resolved += 1
            finding.resolved_at = now
            finding.save(update_fields=["resolved_at"])
            _audit("provisioning.drift_resolved", finding, now=now)
        _record_last_use(readable, now=now)
        if found:
            # Owed with the findings, so each new drift is told exactly once (SPEC §4).
            effects.enqueue(notices.send_drift_email, found)
            if settings.SLACK_WEBHOOK_URL:
                effects.enqueue(notices.post_drift_webhook, found)
    accounts = [a.account.account_id for a in plan.accounts]
    open_findings = DriftFinding.objects.filter(
        resolved_at__isnull=True, account_id__in=accounts
    ).order_by("account_id", "role_name")
    return DriftReport(plan, tuple(open_findings), new, resolved)


def _record_last_use(readable: Sequence[AccountPlan], *, now: datetime) -> None:
    """Keep IAM's RoleLastUsed of every wanted role read (one upsert for all accounts)."""
    rows = [
        RoleLastUsed(
            account_id=a.account.account_id,
            role=want.logical_role,
            role_name=want.name,
            last_used=a.last_used[want.logical_role],
            read_at=now,
        )
        for a in readable
        for want in a.desired
        if want.logical_role in a.last_used
    ]
    if rows:
        RoleLastUsed.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["account_id", "role"],
            update_fields=["role_name", "last_used", "read_at"],
        )


def _audit(event: str, finding: DriftFinding, *, now: datetime) -> None:
    record_event(
        event,
        actor="system",
        account_id=finding.account_id,
        target=f"{finding.account_id}/{finding.role_name}",
        data={
            "role": finding.role_name,
            "action": finding.action,
            "differences": list(finding.differences),
            "first_seen": finding.first_seen.isoformat(),
        },
        now=now,
    )


def drifted_roles() -> int:
    """How many roles drift now (the metric)."""
    return DriftFinding.objects.filter(resolved_at__isnull=True).count()


def render_text(report: DriftReport) -> str:
    lines = []
    by_account: dict[str, list[DriftFinding]] = {}
    for finding in report.open:
        by_account.setdefault(finding.account_id, []).append(finding)
    for account_plan in report.plan.accounts:
        account = account_plan.account
        gone = ", no longer in the tables" if account_plan.retired else ""
        lines.append(f"account {account.account_id} ({account.alias}{gone}):")
        if account_plan.error:
            label = "UNREACHABLE" if account_plan.retired else "ERROR"
            lines.append(f"  {label} {account_plan.error}")
            continue
        findings = by_account.get(account.account_id, [])
        if not findings:
            lines.append("  in sync")
        for finding in findings:
            since = finding.first_seen.strftime("%Y-%m-%d %H:%M UTC")
            lines.append(f"  {finding.role_name}: {finding.action} (since {since})")
            lines += [f"    - {difference}" for difference in finding.differences]
    lines.append(
        f"{len(report.open)} drifted role(s), {report.new} new, {report.resolved} resolved"
    )
    return "\n".join(lines) + "\n"
