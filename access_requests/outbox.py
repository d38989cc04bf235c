"""The transactional outbox's rows (issue #17): what a change owes, who has had it, what is done.

``services/effects.py`` writes a row in the transaction of the change and publishes it after
commit; ``sweeps.relay_outbox`` publishes what the broker did not take. The effect tasks
(``tasks.py``) call ``claim`` / ``delivered_to`` / ``record_delivery`` / ``mark_done`` here, so
a message delivered twice (a relay and a sweep, a redelivery after a worker died) does nothing
twice. Nothing here talks to the broker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from access_requests.models import EffectDelivery, OutboxEffect

# First key of PostgreSQL's two-key advisory locks taken on effect ids (any constant no other
# lock in this service uses; revocation uses the one-key form).
_LOCK_NAMESPACE = 17


def record(task_name: str, args: Sequence[Any], *, now: datetime) -> OutboxEffect:
    """Write the intent; called inside the transaction of the change that owes it."""
    return OutboxEffect.objects.create(task=task_name, args=list(args), created_at=now)


def mark_queued(effect_ids: Sequence[int], *, now: datetime) -> None:
    for effect_id in effect_ids:
        OutboxEffect.objects.filter(pk=effect_id).update(queued_at=now)


def count_attempt(effect_id: int) -> None:
    OutboxEffect.objects.filter(pk=effect_id).update(publish_attempts=F("publish_attempts") + 1)


def list_unpublished(*, now: datetime, grace: timedelta, requeue_after: timedelta) -> list[int]:
    """Owed effects to hand to the broker: never queued and older than ``grace`` (the on-commit
    publish is not raced), or queued long ago and still not done (the message or its retries
    were lost)."""
    owed = OutboxEffect.objects.filter(done_at__isnull=True)
    never = owed.filter(queued_at__isnull=True, created_at__lte=now - grace)
    stale = owed.filter(queued_at__lte=now - requeue_after)
    return sorted(set(never.values_list("pk", flat=True)) | set(stale.values_list("pk", flat=True)))


def is_done(effect_id: int) -> bool:
    return OutboxEffect.objects.filter(pk=effect_id, done_at__isnull=False).exists()


def mark_done(effect_id: int, *, now: datetime) -> None:
    OutboxEffect.objects.filter(pk=effect_id, done_at__isnull=True).update(done_at=now)


def delivered_to(effect_id: int) -> set[str]:
    return set(
        EffectDelivery.objects.filter(effect_id=effect_id).values_list("recipient", flat=True)
    )


def record_delivery(effect_id: int, recipient: str, *, now: datetime) -> None:
    """Committed at once, per recipient: a crash after this send never resends to them."""
    with transaction.atomic():
        EffectDelivery.objects.bulk_create(
            [EffectDelivery(effect_id=effect_id, recipient=recipient, at=now)],
            ignore_conflicts=True,
        )


@contextmanager
def claim(effect_id: int) -> Iterator[bool]:
    """Hold the effect while its task runs; yields False when another worker holds it (a
    duplicate message), which must then do nothing. A session advisory lock, so no transaction
    stays open across the mail or webhook call, and a dead worker's lock dies with it."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = effect_id % 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, key])
        (acquired,) = cursor.fetchone() or (False,)
    try:
        yield bool(acquired)
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, key])
