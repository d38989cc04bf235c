"""Task names are an interface: the beat schedule and deployed schedulers name the sweeps, and
queued effect messages name the effect tasks, so moving a task must not rename it."""

from __future__ import annotations

from typing import Any

from access_requests import sweeps, tasks
from federation.celery import app


def test_every_scheduled_task_is_registered_under_the_name_the_schedule_uses(
    settings: Any,
) -> None:
    scheduled = {
        entry["task"]
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if str(entry["task"]).startswith("access_requests.")
    }

    assert scheduled == {
        "access_requests.tasks.expire_due",
        "access_requests.tasks.retry_owed_revocations",
        "access_requests.tasks.collect_revocation_policies",
        "access_requests.tasks.relay_outbox",
    }
    assert scheduled <= set(app.tasks)
    assert {
        sweeps.expire_due.name,
        sweeps.retry_owed_revocations.name,
        sweeps.collect_revocation_policies.name,
        sweeps.relay_outbox.name,
    } == scheduled


def test_effect_tasks_keep_their_names() -> None:
    assert [
        tasks.send_request_email.name,
        tasks.post_request_webhook.name,
        tasks.apply_revocation_policy.name,
    ] == [
        "access_requests.tasks.send_request_email",
        "access_requests.tasks.post_request_webhook",
        "access_requests.tasks.apply_revocation_policy",
    ]
