"""The outbox in-process (issue #17): intents commit with the change or not at all, the relay
picks what is owed, and a done effect is never delivered again. Tasks run eagerly here (no
broker configured), into Django's in-memory mailbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from access_requests import outbox, tasks
from access_requests.models import AccessRequest, EffectDelivery, OutboxEffect
from access_requests.notifications import RequestEvent
from access_requests.services import effects, workflow
from tests.access_requests.conftest import World

pytestmark = pytest.mark.django_db


def submit(world: World) -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="INC-12",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )


def test_a_rolled_back_change_owes_nothing(world: World) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        effects.notify(1, RequestEvent.APPROVED)
        assert OutboxEffect.objects.count() == 1
        raise RuntimeError("the change failed")

    assert OutboxEffect.objects.count() == 0


def test_a_submitted_request_owes_its_notices_and_they_are_done_after_running(
    world: World, settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    with django_capture_on_commit_callbacks(execute=False) as published:
        request = submit(world)

    (effect,) = OutboxEffect.objects.all()
    assert (effect.task, effect.args, effect.done_at) == (
        "access_requests.tasks.send_request_email",
        [request.pk, "submitted"],
        None,
    )
    for callback in published:
        callback()
    effect.refresh_from_db()
    assert effect.done_at is not None and effect.queued_at is not None
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        [world.approver.email, world.second_approver.email]
    )


def test_a_done_effect_delivers_nothing_when_its_message_comes_again(
    world: World, settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    with django_capture_on_commit_callbacks(execute=True):
        submit(world)
    (effect,) = OutboxEffect.objects.all()
    sent = len(mail.outbox)

    tasks.send_request_email.apply_async(args=effect.args, kwargs={"effect_id": effect.pk})
    effects.publish([effect.pk])

    assert len(mail.outbox) == sent == 2


def test_a_retry_mails_only_the_recipients_not_yet_reached(
    world: World, settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    with django_capture_on_commit_callbacks(execute=False):
        request = submit(world)
    (effect,) = OutboxEffect.objects.all()
    outbox.record_delivery(effect.pk, world.approver.email, now=timezone.now())

    tasks.send_request_email.apply_async(
        args=[request.pk, "submitted"], kwargs={"effect_id": effect.pk}
    )

    assert [m.to for m in mail.outbox] == [[world.second_approver.email]]
    assert EffectDelivery.objects.filter(effect=effect).count() == 2


def test_the_relay_picks_effects_never_published_and_those_published_long_ago_not_done() -> None:
    now = timezone.now()
    grace, requeue = timedelta(seconds=10), timedelta(minutes=30)

    def row(**fields: Any) -> int:
        return OutboxEffect.objects.create(
            task="t", created_at=now - timedelta(hours=1), **fields
        ).pk

    never = row()
    stale = row(queued_at=now - timedelta(hours=1))
    row(queued_at=now - timedelta(minutes=1))  # on the broker, not yet run
    row(queued_at=now - timedelta(hours=1), done_at=now - timedelta(minutes=59))  # done
    fresh = OutboxEffect.objects.create(task="t", created_at=now).pk  # its on-commit publish runs

    owed = outbox.list_unpublished(now=now, grace=grace, requeue_after=requeue)

    assert owed == [never, stale]
    assert fresh not in owed


def test_a_failing_inline_task_does_not_pause_publishing_in_the_demo(world: World) -> None:
    # No broker configured: tasks run inline, and there is no sweep to leave effects to.
    broken = outbox.record("access_requests.tasks.apply_revocation_policy", [0], now=timezone.now())
    assert effects.publish([broken.pk]) == 0  # grant #0 does not exist: the task raised

    notice = outbox.record(
        "access_requests.tasks.send_request_email", [0, "submitted"], now=timezone.now()
    )
    assert effects.publish([notice.pk]) == 1
