"""Side effects of a committed change: queued after commit, never run inside the transaction.

A task queued here runs only if the change commits, and its failure never undoes the change
(STYLE: external side effects after commit). Callers pass the task objects themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Retry
from django.conf import settings
from django.db import transaction

from access_requests import tasks
from access_requests.notifications import RequestEvent

logger = logging.getLogger(__name__)


def notify(request_id: int, event: RequestEvent) -> None:
    """Tell the people concerned by mail, and the webhook when one is configured."""
    enqueue(tasks.send_request_email, request_id, event)
    if settings.SLACK_WEBHOOK_URL:
        enqueue(tasks.post_request_webhook, request_id, event)


def enqueue(task: Task, *args: Any) -> None:
    """Queue ``task`` once the transaction commits. A broker outage (or, with eager tasks, a
    failing mail server) is logged and never undoes or blocks the committed change; owed
    revocations are re-queued by the sweep."""

    def send() -> None:
        try:
            task.delay(*args)
        except Retry as retry:
            # Eager mode (demo): the task failed and asked to be retried; the sweep will.
            logger.warning("%s%r failed and stays owed: %s", task.name, args, retry)
        except Exception:
            logger.exception("could not run or queue %s%r", task.name, args)

    transaction.on_commit(send)
