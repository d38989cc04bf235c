"""Effect tasks: what a committed change owes the outside world (mail, webhook, IAM deny), each
a thin wrapper with retries. ``services/effects.py`` queues them after commit; the beat tasks
that sweep for owed work live in ``sweeps.py``.
"""

from __future__ import annotations

import smtplib
from typing import Any

import requests
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from access_requests import notifications, revocation

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
def send_request_email(request_id: int, event: str) -> int:
    return notifications.send_request_email(request_id, event)


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(requests.RequestException,),
    max_retries=settings.NOTIFICATION_MAX_RETRIES,
    **_RETRY,
)
def post_request_webhook(request_id: int, event: str) -> bool:
    return notifications.post_request_webhook(request_id, event)


@shared_task(  # type: ignore[untyped-decorator]
    autoretry_for=(revocation.RevocationPolicyFailed,),
    max_retries=settings.REVOCATION_MAX_RETRIES,
    **_RETRY,
)
def apply_revocation_policy(grant_id: int) -> str:
    grant = revocation.apply_revocation_policy(grant_id, now=timezone.now())
    return f"grant #{grant.pk}: deny policy applied at {grant.revocation_applied_at}"
