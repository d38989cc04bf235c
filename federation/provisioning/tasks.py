"""The drift check on a schedule (CELERY_BEAT_SCHEDULE "drift-check", settings.py)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from federation.observability import metrics
from federation.provisioning.drift import check_drift


@shared_task(name="federation.provisioning.drift_check")  # type: ignore[untyped-decorator]
def drift_check() -> int:
    """Returns the number of drifted roles; unreadable accounts are logged by the report."""
    now = timezone.now()
    report = check_drift(now=now)
    # The drifted roles themselves are read from the findings at scrape time (collectors.py).
    metrics.record_drift_check(finished_at=now.timestamp(), complete=not report.errors)
    return len(report.open)
