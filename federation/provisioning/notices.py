"""What the admins are told when ``drift_check`` finds new drift: one mail each and one webhook
post per check that found any, through the effect outbox (``access_requests.services.effects``),
so a notice is owed in the same transaction that records the findings and is delivered once,
however many checks see the drift afterwards.

The tasks here are effect tasks (``access_requests.tasks.EFFECT_TASKS`` lists them): they take
the outbox row's id, do nothing for a row already done or held by another worker, and mark it
done once delivered. Messages name roles and what differs, never a policy document.
"""

from __future__ import annotations

import smtplib

import requests
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from access_requests import outbox
from access_requests.approvers import list_admins
from access_requests.notifications import Notice, post_notice, send_notice
from federation.models import DriftFinding

# A drift storm (a broker role recreated: every role of every account) makes one notice, not
# thousands; the page has the rest.
MAX_LISTED = 50


def build_drift_notice(finding_ids: list[int]) -> Notice:
    findings = list(
        DriftFinding.objects.filter(pk__in=finding_ids).order_by("account_id", "role_name")
    )
    accounts = {f.account_id for f in findings}
    subject = f"Drift: {len(findings)} role(s) in {len(accounts)} account(s) differ from the tables"
    lines = []
    for finding in findings[:MAX_LISTED]:
        lines.append(
            f"{finding.account_alias} ({finding.account_id}) role {finding.role_name}: "
            f"{finding.action}, since {finding.first_seen:%Y-%m-%d %H:%M} UTC"
        )
        lines += [f"  - {difference}" for difference in finding.differences]
    if len(findings) > MAX_LISTED:
        lines.append(f"... and {len(findings) - MAX_LISTED} more")
    lines += ["", f"See {settings.BASE_URL}/drift/ to plan the repair."]
    recipients = tuple(sorted({u.email for u in list_admins() if u.email}))
    return Notice(recipients, subject, "\n".join(lines) + "\n")


_RETRY = {"retry_backoff": True, "retry_backoff_max": 600, "acks_late": True}


@shared_task(  # type: ignore[untyped-decorator]
    name="federation.provisioning.send_drift_email",
    autoretry_for=(OSError, smtplib.SMTPException),
    max_retries=settings.NOTIFICATION_MAX_RETRIES,
    **_RETRY,
)
def send_drift_email(finding_ids: list[int], effect_id: int | None = None) -> int:
    if effect_id is None:
        return send_notice(build_drift_notice(finding_ids), effect_id=None)
    with outbox.claim(effect_id) as mine:
        if not mine or outbox.is_done(effect_id):
            return 0
        sent = send_notice(build_drift_notice(finding_ids), effect_id=effect_id)
        outbox.mark_done(effect_id, now=timezone.now())
        return sent


@shared_task(  # type: ignore[untyped-decorator]
    name="federation.provisioning.post_drift_webhook",
    autoretry_for=(requests.RequestException,),
    max_retries=settings.NOTIFICATION_MAX_RETRIES,
    **_RETRY,
)
def post_drift_webhook(finding_ids: list[int], effect_id: int | None = None) -> bool:
    if effect_id is None:
        return post_notice(build_drift_notice(finding_ids), effect_id=None)
    with outbox.claim(effect_id) as mine:
        if not mine or outbox.is_done(effect_id):
            return False
        posted = post_notice(build_drift_notice(finding_ids), effect_id=effect_id)
        outbox.mark_done(effect_id, now=timezone.now())
        return posted
