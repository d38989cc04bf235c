"""Celery tasks: thin wrappers that call services and notifications, with retries.

Scheduled ones (``CELERY_BEAT_SCHEDULE`` in settings): ``expire_due`` and
``retry_owed_revocations`` every minute, ``collect_revocation_policies`` hourly.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from typing import Any

import requests
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from access_requests import notifications, queries, refusals
from access_requests.services import workflow as services

logger = logging.getLogger(__name__)

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
    autoretry_for=(refusals.RevocationPolicyFailed,),
    max_retries=settings.REVOCATION_MAX_RETRIES,
    **_RETRY,
)
def apply_revocation_policy(grant_id: int) -> str:
    grant = services.apply_revocation_policy(grant_id, now=timezone.now())
    return f"grant #{grant.pk}: deny policy applied at {grant.revocation_applied_at}"


@shared_task  # type: ignore[untyped-decorator]
def expire_due() -> dict[str, int]:
    now = timezone.now()
    report = services.expire_due(now=now)
    lost = services.revoke_lost_eligibility(now=now)
    return {"requests": report.requests_expired, "grants": report.grants_expired, "revoked": lost}


@shared_task  # type: ignore[untyped-decorator]
def retry_owed_revocations() -> int:
    """Re-queue revocations whose task was lost or ran out of retries: never drop a deny."""
    owed = queries.list_owed_revocations(now=timezone.now(), older_than=timedelta(minutes=1))
    for grant_id in owed:
        try:
            apply_revocation_policy.delay(grant_id)
        except Exception:
            # Eager mode runs it inline and propagates; one failing role must not stop the rest.
            logger.exception("revocation policy for grant #%s still owed", grant_id)
    return len(owed)


@shared_task  # type: ignore[untyped-decorator]
def collect_revocation_policies() -> int:
    return services.collect_revocation_policies(now=timezone.now())
