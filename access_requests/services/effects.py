"""Side effects a change owes, through the transactional outbox (issue #17).

``notify`` and ``enqueue`` run inside the change's transaction: they write an ``OutboxEffect``
row there, so the intent commits (or rolls back) with the change. After commit the rows are
published to the broker; when the broker does not answer within its bounded timeouts they stay
owed and ``sweeps.relay_outbox`` publishes them later. A task marks its row done once it has run.
No effect is ever only a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from celery import Task
from celery.exceptions import Retry
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access_requests import outbox, tasks
from access_requests.models import OutboxEffect
from access_requests.notifications import RequestEvent

logger = logging.getLogger(__name__)


def notify(request_id: int, event: RequestEvent) -> None:
    """Owe the people concerned a mail, and the webhook a post when one is configured."""
    enqueue(tasks.send_request_email, request_id, str(event))
    if settings.SLACK_WEBHOOK_URL:
        enqueue(tasks.post_request_webhook, request_id, str(event))


def enqueue(task: Task, *args: Any) -> None:
    """Record that ``task(*args)`` is owed, and publish it once the transaction commits."""
    if task.name not in tasks.EFFECT_TASKS:
        raise ValueError(f"{task.name} is not an effect task")
    effect = outbox.record(task.name, args, now=timezone.now())
    transaction.on_commit(lambda: publish([effect.pk]))


# Monotonic time until which this process leaves new effects to the sweep: the broker did not
# answer a moment ago, and every caller in between would otherwise pay the timeout again.
_broker_paused_until = 0.0


def publish(effect_ids: Sequence[int]) -> int:
    """Hand owed effects to the broker; returns how many it took.

    The broker's connect and socket timeouts and the publish retry policy (settings) bound each
    attempt. After a failure the rest is left for the sweep, and this process does not try again
    for ``OUTBOX_PUBLISH_PAUSE``: a dead or hung broker costs one caller one bounded attempt,
    never one per effect or per request.
    """
    global _broker_paused_until
    if time.monotonic() < _broker_paused_until:
        logger.warning("broker paused after a failure: effects %s stay owed", list(effect_ids))
        return 0
    pause = settings.OUTBOX_PUBLISH_PAUSE.total_seconds()
    published = 0
    for effect in OutboxEffect.objects.filter(pk__in=effect_ids, done_at__isnull=True):
        task = tasks.EFFECT_TASKS[effect.task]
        outbox.count_attempt(effect.pk)
        try:
            task.apply_async(args=effect.args, kwargs={"effect_id": effect.pk})
        except Retry as retry:
            # Eager mode (demo): the task ran inline and failed; the row stays owed.
            logger.warning("effect #%s (%s) failed and stays owed: %s", effect.pk, task.name, retry)
        except Exception as exc:
            logger.warning(
                "broker did not take effect #%s (%s): %s; it stays owed and the outbox sweep "
                "publishes it when the broker answers",
                effect.pk,
                task.name,
                exc,
            )
            if not task.app.conf.task_always_eager:
                # Eager mode (demo) has no broker to wait for and no sweep to leave things to.
                _broker_paused_until = time.monotonic() + pause
            break
        outbox.mark_queued([effect.pk], now=timezone.now())
        published += 1
    return published


def relay_owed() -> int:
    """Publish what is owed and not on the broker (the beat sweep); returns how many went."""
    owed = outbox.list_unpublished(
        now=timezone.now(),
        grace=settings.OUTBOX_RELAY_GRACE,
        requeue_after=settings.OUTBOX_REQUEUE_AFTER,
    )
    return publish(owed) if owed else 0
