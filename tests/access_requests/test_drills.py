"""Fault drills (issue #17) on real parts: a Celery worker with beat on a private redis-server
that the drill stops and starts, mail to a local SMTP server, a local webhook receiver.

Each drill ends with the effect delivered exactly once and nothing owed left in the outbox.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from access_requests import tasks
from access_requests.models import AccessRequest, EffectDelivery, Grant, OutboxEffect
from access_requests.services import workflow
from federation.models import MappingVersion
from tests.access_requests.conftest import World, build_world
from tests.access_requests.live import (
    MailSink,
    PrivateBroker,
    WebhookSink,
    use_broker,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_worker")]

_versions = itertools.count(1000)
# After the effects are done, how long a drill keeps watching for a second delivery.
SETTLE = 3.0


@pytest.fixture
def world(
    settings: Any, mail_sink: MailSink, webhook_sink: WebhookSink, private_broker: PrivateBroker
) -> Iterator[World]:
    settings.SLACK_WEBHOOK_URL = webhook_sink.url
    mail_sink.reset()
    webhook_sink.reset()
    built = build_world()
    MappingVersion.objects.create(number=next(_versions), actor="test", source="seed", document={})
    yield built
    if private_broker.process is None:
        private_broker.start()
    use_broker(broker_url=private_broker.url)
    mail_sink.reset()
    webhook_sink.reset()


def submit(world: World) -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="INC-9 ledger down",
        duration=timedelta(hours=1),
        ticket="INC-9",
        now=timezone.now(),
    )


def submitted_and_notified(
    world: World, mail_sink: MailSink, webhook: WebhookSink
) -> AccessRequest:
    request = submit(world)
    wait_for(lambda: len(mail_sink.messages) == 2 and webhook.posts, what="the request notices")
    wait_for(lambda: not owed(), what="the request notices to be marked done")
    mail_sink.reset()
    webhook.reset()
    return request


def owed() -> list[OutboxEffect]:
    return list(OutboxEffect.objects.filter(done_at__isnull=True))


def approve(world: World, request: AccessRequest) -> float:
    started = time.monotonic()
    decided = workflow.decide_request(
        request, actor=world.approver, decision="approve", comment="go", now=timezone.now()
    )
    elapsed = time.monotonic() - started
    assert decided.state == AccessRequest.State.APPROVED
    assert Grant.objects.filter(request=request, state=Grant.State.ACTIVE).exists()
    return elapsed


def assert_approval_delivered_once(
    world: World, request: AccessRequest, mail_sink: MailSink, webhook: WebhookSink
) -> None:
    wait_for(lambda: mail_sink.to(world.requester.email), timeout=60, what="the approved mail")
    wait_for(lambda: webhook.posts, timeout=60, what="the approved webhook post")
    wait_for(lambda: not owed(), timeout=30, what="every effect to be done")
    time.sleep(SETTLE)
    (message,) = mail_sink.to(world.requester.email)
    assert f"Access request #{request.pk} approved" in message["Subject"]
    (post,) = webhook.posts
    assert f"Access request #{request.pk} approved" in post["text"]
    assert len(mail_sink.messages) == 1


def test_broker_down_while_approving_keeps_the_notices_owed_and_sends_them_once_it_returns(
    world: World, mail_sink: MailSink, webhook_sink: WebhookSink, private_broker: PrivateBroker
) -> None:
    request = submitted_and_notified(world, mail_sink, webhook_sink)

    private_broker.stop()
    approve(world, request)

    # The intents committed with the decision; the broker took none of them.
    pending = owed()
    assert sorted(e.task for e in pending) == [
        "access_requests.tasks.post_request_webhook",
        "access_requests.tasks.send_request_email",
    ]
    assert [e.queued_at for e in pending] == [None, None]
    # One bounded attempt paid by the approver; the second effect was not tried at all.
    assert sum(e.publish_attempts for e in pending) == 1
    time.sleep(2)
    assert mail_sink.messages == [] and webhook_sink.posts == []

    private_broker.start()

    # Nobody re-publishes from this process: the worker's beat sweep finds the owed rows.
    assert_approval_delivered_once(world, request, mail_sink, webhook_sink)


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel completes the handshake) and never
    answers: a hung broker."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


def test_hung_broker_costs_the_approver_a_bounded_wait_and_loses_nothing(
    world: World,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    private_broker: PrivateBroker,
    blackhole: str,
) -> None:
    request = submitted_and_notified(world, mail_sink, webhook_sink)
    use_broker(broker_url=blackhole)

    elapsed = approve(world, request)

    # A hang guard, not a speed figure (bench/broker_outage.py measures it): the unbounded
    # publish never returned.
    assert elapsed < 15
    assert [e.queued_at for e in owed()] == [None, None]
    use_broker(broker_url=private_broker.url)
    assert_approval_delivered_once(world, request, mail_sink, webhook_sink)


def test_smtp_refusing_one_recipient_once_resends_to_that_recipient_only(
    world: World, mail_sink: MailSink, webhook_sink: WebhookSink
) -> None:
    mail_sink.refuse_once.add(world.approver.email)

    request = submit(world)

    wait_for(lambda: mail_sink.to(world.approver.email), timeout=60, what="the retried mail")
    wait_for(lambda: not owed(), timeout=30, what="every effect to be done")
    time.sleep(SETTLE)
    assert mail_sink.refused == 1
    assert len(mail_sink.to(world.approver.email)) == 1
    assert len(mail_sink.to(world.second_approver.email)) == 1
    (effect,) = OutboxEffect.objects.filter(task="access_requests.tasks.send_request_email")
    assert effect.args == [request.pk, "submitted"]
    assert set(
        EffectDelivery.objects.filter(effect=effect).values_list("recipient", flat=True)
    ) == {
        world.approver.email,
        world.second_approver.email,
    }


def test_a_redelivered_effect_message_does_nothing_twice(
    world: World, mail_sink: MailSink, webhook_sink: WebhookSink
) -> None:
    submitted_and_notified(world, mail_sink, webhook_sink)
    done = list(OutboxEffect.objects.all())

    for effect in done:
        tasks.EFFECT_TASKS[effect.task].apply_async(
            args=effect.args, kwargs={"effect_id": effect.pk}
        )

    time.sleep(SETTLE)
    assert mail_sink.messages == [] and webhook_sink.posts == []
