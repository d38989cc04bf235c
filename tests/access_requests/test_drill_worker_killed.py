"""Fault drill (issue #17): the worker is killed (SIGKILL) while it is delivering a mail; the
next worker delivers it, once. Its own private redis-server and workers, started and killed
here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from access_requests.models import EffectDelivery, OutboxEffect
from access_requests.services import workflow
from federation.models import MappingVersion
from tests.access_requests.conftest import World, build_world
from tests.access_requests.live import (
    MailSink,
    PrivateBroker,
    WebhookSink,
    Worker,
    run_worker,
    wait_for,
    worker_database_url,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Short, so the next worker's sweep picks up the effect the dead worker had taken.
REQUEUE_AFTER = "4"


def start_worker(
    broker: PrivateBroker, mail: MailSink, webhook: WebhookSink, tmp: pytest.TempPathFactory
) -> tuple[Iterator[Worker], Worker]:
    running = run_worker(
        broker.url,
        worker_database_url(),
        mail,
        webhook,
        tmp,
        OUTBOX_REQUEUE_AFTER_SECONDS=REQUEUE_AFTER,
    )
    return running, next(running)


def test_worker_killed_mid_delivery_leaves_the_mail_to_the_next_worker_who_sends_it_once(
    settings: Any,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    private_broker: PrivateBroker,
    moto_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    mail_sink.reset()
    world: World = build_world()
    MappingVersion.objects.create(number=1, actor="test", source="seed", document={})
    first, worker = start_worker(private_broker, mail_sink, webhook_sink, tmp_path_factory)
    try:
        request = workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="INC-11 queue stuck",
            duration=timedelta(hours=1),
            now=timezone.now(),
        )
        wait_for(lambda: len(mail_sink.messages) == 2, what="the approvers' mails")
        mail_sink.hold.add(world.requester.email)
        workflow.decide_request(
            request, actor=world.approver, decision="approve", now=timezone.now()
        )
        wait_for(lambda: mail_sink.held, what="the worker to be in the middle of the mail")

        worker.process.kill()
        worker.process.wait(timeout=20)
    finally:
        first.close()
    mail_sink.hold.clear()
    (effect,) = OutboxEffect.objects.filter(done_at__isnull=True)
    assert effect.queued_at is not None  # it was taken, and died with the worker
    assert mail_sink.to(world.requester.email) == []

    second, _ = start_worker(private_broker, mail_sink, webhook_sink, tmp_path_factory)
    try:
        wait_for(lambda: mail_sink.to(world.requester.email), timeout=60, what="the mail, resent")
        wait_for(
            lambda: OutboxEffect.objects.filter(pk=effect.pk, done_at__isnull=False).exists(),
            what="the effect to be done",
        )
        time.sleep(3)
    finally:
        second.close()
    (message,) = mail_sink.to(world.requester.email)
    assert f"Access request #{request.pk} approved" in message["Subject"]
    assert list(
        EffectDelivery.objects.filter(effect=effect).values_list("recipient", flat=True)
    ) == [world.requester.email]
