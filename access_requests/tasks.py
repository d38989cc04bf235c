"""Effect tasks: what a committed change owes the outside world (mail, webhook, IAM deny), each
a thin wrapper with retries. ``services/effects.py`` records them in the outbox and publishes
them; the beat tasks that sweep for owed work live in ``sweeps.py``.

Each task takes the outbox row's id as ``effect_id`` (absent only on messages queued before the
outbox existed): a row already done, or held by another worker, makes the task a no-op, and the
row is marked done once the task has run. Queued messages name these tasks: keep the names.
"""

from __future__ import annotations

import smtplib
from typing import Any

import requests
from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from access_requests import notifications, outbox, revocation
from federation.directory import denies
from federation.provisioning import notices, runner

_RETRY: dict[str, Any] = {
    "retry_backoff": True,  # 1 s, 2 s, 4 s ... with jitter
    "retry_backoff_max": 600,
    "acks_late": True,
}


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(OSError, smtplib.SMTPException),
    max_retries=settings.NOTIFICATION_MAX_RETRIES,
    **_RETRY,
)
def send_request_email(request_id: int, event: str, effect_id: int | None = None) -> int:
    if effect_id is None:
        return notifications.send_request_email(request_id, event, effect_id=None)
    with outbox.claim(effect_id) as mine:
        if not mine or outbox.is_done(effect_id):
            return 0
        sent = notifications.send_request_email(request_id, event, effect_id=effect_id)
        outbox.mark_done(effect_id, now=timezone.now())
        return sent


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(requests.RequestException,),
    max_retries=settings.NOTIFICATION_MAX_RETRIES,
    **_RETRY,
)
def post_request_webhook(request_id: int, event: str, effect_id: int | None = None) -> bool:
    if effect_id is None:
        return notifications.post_request_webhook(request_id, event, effect_id=None)
    with outbox.claim(effect_id) as mine:
        if not mine or outbox.is_done(effect_id):
            return False
        posted = notifications.post_request_webhook(request_id, event, effect_id=effect_id)
        outbox.mark_done(effect_id, now=timezone.now())
        return posted


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(requests.RequestException,),
    max_retries=settings.NOTIFICATION_MAX_RETRIES,
    **_RETRY,
)
def post_break_glass_webhooks(request_id: int, event: str, effect_id: int | None = None) -> int:
    if effect_id is None:
        return notifications.post_break_glass_webhooks(request_id, event, effect_id=None)
    with outbox.claim(effect_id) as mine:
        if not mine or outbox.is_done(effect_id):
            return 0
        posted = notifications.post_break_glass_webhooks(request_id, event, effect_id=effect_id)
        outbox.mark_done(effect_id, now=timezone.now())
        return posted


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(revocation.RevocationPolicyFailed,),
    max_retries=settings.REVOCATION_MAX_RETRIES,
    **_RETRY,
)
def apply_revocation_policy(grant_id: int, effect_id: int | None = None) -> str:
    # Idempotent on the grant itself (revocation_applied_at); the row only records that it ran.
    grant = revocation.apply_revocation_policy(grant_id, now=timezone.now())
    if effect_id is not None:
        outbox.mark_done(effect_id, now=timezone.now())
    return f"grant #{grant.pk}: deny policy applied at {grant.revocation_applied_at}"


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(revocation.RevocationPolicyFailed,),
    max_retries=settings.REVOCATION_MAX_RETRIES,
    **_RETRY,
)
def apply_identity_deny(deny_id: int, effect_id: int | None = None) -> str:
    # A directory leaver's or mover's deny (federation/directory/denies.py); idempotent.
    deny = denies.apply_identity_deny(deny_id, now=timezone.now())
    if effect_id is not None:
        outbox.mark_done(effect_id, now=timezone.now())
    return f"identity deny #{deny.pk} applied at {deny.applied_at}"


# What the outbox may name in OutboxEffect.task, by task name.
EFFECT_TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        send_request_email,
        post_request_webhook,
        post_break_glass_webhooks,
        apply_revocation_policy,
        apply_identity_deny,
        notices.send_drift_email,
        notices.post_drift_webhook,
        runner.run_rollout,
    )
}
