"""The drift check on a schedule (CELERY_BEAT_SCHEDULE "drift-check", settings.py)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from federation.provisioning.drift import check_drift


@shared_task(name="federation.provisioning.drift_check")  # type: ignore[untyped-decorator]
def drift_check() -> int:
    """Returns the number of drifted roles; unreadable accounts are logged by the report."""
    return len(check_drift(now=timezone.now()).open)
