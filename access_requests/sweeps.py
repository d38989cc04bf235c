"""Beat tasks: the periodic sweeps that end what is due and re-queue what is owed.

``CELERY_BEAT_SCHEDULE`` (settings) and deployed schedulers name these tasks, so each keeps the
name it had when it lived in ``tasks.py``: ``expire_due`` and ``retry_owed_revocations`` every
minute, ``collect_revocation_policies`` hourly, ``relay_outbox`` every few seconds.
``AccessRequestsConfig.ready()`` imports this module so that every worker registers them (Celery
autodiscovers ``tasks.py`` only).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from access_requests import queries, revocation, tasks
from access_requests.services import effects, grants

logger = logging.getLogger(__name__)


@shared_task(name="access_requests.tasks.expire_due")  # type: ignore[untyped-decorator]
def expire_due() -> dict[str, int]:
    now = timezone.now()
    report = grants.expire_due(now=now)
    lost = grants.revoke_lost_eligibility(now=now)
    return {"requests": report.requests_expired, "grants": report.grants_expired, "revoked": lost}


@shared_task(name="access_requests.tasks.retry_owed_revocations")  # type: ignore[untyped-decorator]
def retry_owed_revocations() -> int:
    """Re-queue revocations whose task was lost or ran out of retries: never drop a deny."""
    owed = queries.list_owed_revocations(now=timezone.now(), older_than=timedelta(minutes=1))
    for grant_id in owed:
        try:
            tasks.apply_revocation_policy.delay(grant_id)
        except Exception:
            # Eager mode runs it inline and propagates; one failing role must not stop the rest.
            logger.exception("revocation policy for grant #%s still owed", grant_id)
    return len(owed)


@shared_task(  # type: ignore[untyped-decorator]
    name="access_requests.tasks.collect_revocation_policies"
)
def collect_revocation_policies() -> int:
    return revocation.collect_revocation_policies(now=timezone.now())


@shared_task(name="access_requests.tasks.relay_outbox")  # type: ignore[untyped-decorator]
def relay_outbox() -> int:
    """Publish owed effects the broker did not take after commit (it was down or hung)."""
    return effects.relay_owed()
