"""The task that runs a rollout started from the web page (``approval.py``), on a worker.

An effect task (``access_requests.tasks.EFFECT_TASKS`` lists it): the approval owes it in the
transaction that marks the rollout running, the outbox publishes it after commit (or its relay,
later, when the broker was down), and a duplicate message finds the effect held or done and does
nothing. A worker that dies mid-rollout leaves steps pending: the relay publishes the effect again
and the rollout continues from its first unfinished wave, as ``roles_apply --resume`` would.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from access_requests import outbox
from federation.provisioning.apply import continue_rollout


@shared_task(name="federation.provisioning.run_rollout", acks_late=True)  # type: ignore[untyped-decorator]
def run_rollout(rollout_id: int, effect_id: int | None = None) -> str:
    if effect_id is None:
        ran = continue_rollout(rollout_id, now=timezone.now())
        return f"rollout {rollout_id}: {ran.state if ran else 'not running'}"
    with outbox.claim(effect_id) as mine:
        if not mine or outbox.is_done(effect_id):
            return f"rollout {rollout_id}: already handled"
        ran = continue_rollout(rollout_id, now=timezone.now())
        outbox.mark_done(effect_id, now=timezone.now())
        return f"rollout {rollout_id}: {ran.state if ran else 'not running'}"
