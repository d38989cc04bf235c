"""Break-glass notices on real parts: a Celery worker subprocess on Redis mails the approvers
and the security contact through a local SMTP server and posts both webhooks (SLACK_WEBHOOK_URL
and one from BREAK_GLASS_NOTIFY), retrying a webhook that fails, each recipient once."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from access_requests.models import OutboxEffect
from access_requests.services.break_glass import activate_break_glass
from federation.models import Access, MappingVersion
from tests.access_requests.conftest import World, build_world
from tests.access_requests.live import (
    BROKER_URL,
    MailSink,
    WebhookSink,
    Worker,
    run_worker,
    wait_for,
    worker_database_url,
)
from tests.aws import MotoServer
from tests.factories import GroupMappingFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("break_glass_worker"),
]

SECURITY = "security@corp.example"
_versions = itertools.count(1)


def _security_hook(sink: WebhookSink) -> str:
    return sink.url.replace("/hooks/slack", "/hooks/security")


@pytest.fixture(scope="module")
def break_glass_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    moto_server: MotoServer,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    with django_db_blocker.unblock():
        database_url = worker_database_url()
    yield from run_worker(
        BROKER_URL,
        database_url,
        mail_sink,
        webhook_sink,
        tmp_path_factory,
        BREAK_GLASS_NOTIFY=f"{SECURITY},{_security_hook(webhook_sink)}",
    )


@pytest.fixture
def world(settings: Any, mail_sink: MailSink, webhook_sink: WebhookSink) -> Iterator[World]:
    settings.SLACK_WEBHOOK_URL = webhook_sink.url
    settings.BREAK_GLASS_NOTIFY = [SECURITY, _security_hook(webhook_sink)]
    mail_sink.reset()
    webhook_sink.reset()
    built = build_world()
    for who in (built.approver, built.second_approver, built.requester):
        who.email = f"{who.username}@corp.example"
        who.save()
    built.requester.directory_groups = ["aws-pb-breakglass"]
    built.requester.save()
    GroupMappingFactory(
        group="aws-pb-breakglass",
        role=built.admin_role,
        business_unit=built.prod.business_unit,
        access=Access.BREAK_GLASS,
        max_grant=timedelta(hours=1),
    )
    # The worker memoises per mapping version: announce the rows written directly.
    MappingVersion.objects.create(number=next(_versions), actor="test", source="seed", document={})
    yield built
    mail_sink.reset()
    webhook_sink.reset()


def test_an_activation_reaches_approvers_security_and_both_webhooks_once(
    world: World, mail_sink: MailSink, webhook_sink: WebhookSink
) -> None:
    webhook_sink.fail_next = 1  # the first post fails: the task retries the one that failed

    grant = activate_break_glass(
        world.requester,
        account_id="222222222222",
        role="admin",
        justification="INC-9 payments down",
        now=timezone.now(),
    )

    for address in ("anna@corp.example", "bob@corp.example", SECURITY):
        (message,) = wait_for(lambda a=address: mail_sink.to(a), what=f"mail to {address}")
        assert message["Subject"].startswith(f"BREAK-GLASS #{grant.request_id}")
    wait_for(lambda: len(webhook_sink.posts) == 2, timeout=60, what="both webhook posts")
    assert all("BREAK-GLASS" in post["text"] for post in webhook_sink.posts)
    assert webhook_sink.refused == 1
    assert mail_sink.to("rita@corp.example") == []  # never its own user
    wait_for(
        lambda: not OutboxEffect.objects.filter(done_at__isnull=True).exists(),
        what="every effect done",
    )
    assert len(webhook_sink.posts) == 2 and len(mail_sink.messages) == 3
