"""Tasks on real parts: a Celery worker subprocess with beat on Redis, mail to a local SMTP
server, a local webhook receiver, IAM on moto over HTTP (issue #6 §6)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from django.utils import timezone
from kombu import Connection

from access_requests.models import AccessRequest, Grant
from access_requests.services import grants, workflow
from federation.aws import iam
from federation.models import AuditEvent, MappingVersion
from tests.access_requests.conftest import World, build_world
from tests.access_requests.live import BROKER_URL, MailSink, WebhookSink, Worker, wait_for
from tests.aws import MotoServer
from tests.factories import AccessRequestFactory, GrantFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


_versions = itertools.count(1)


@pytest.fixture
def world(settings: Any, mail_sink: MailSink, webhook_sink: WebhookSink) -> Iterator[World]:
    settings.SLACK_WEBHOOK_URL = webhook_sink.url
    mail_sink.reset()
    webhook_sink.reset()
    built = build_world()
    # The worker memoises entitlements per mapping version, as every process does. Rows here
    # are written directly (not through federation.mappings) and the database is flushed
    # between tests, so announce a new version, as a mapping change would.
    MappingVersion.objects.create(number=next(_versions), actor="test", source="seed", document={})
    yield built
    mail_sink.reset()
    webhook_sink.reset()


def submit(world: World, account: str = "111111111111") -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id=account,
        role="admin",
        justification="INC-7 payments down",
        duration=timedelta(hours=1),
        ticket="INC-7",
        now=timezone.now(),
    )


def test_new_request_mails_each_approver_and_posts_the_webhook(
    world: World, mail_sink: MailSink, webhook_sink: WebhookSink
) -> None:
    request = submit(world)

    for approver in (world.approver, world.second_approver):
        (message,) = wait_for(lambda a=approver: mail_sink.to(a.email), what="approver mail")
        assert message["From"] == "aws-access@corp.example"
        assert f"Access request #{request.pk}" in message["Subject"]
        body = message.get_payload()
        assert "INC-7 payments down" in body and "/approvals/" in body
    (post,) = wait_for(lambda: webhook_sink.posts, what="webhook post")
    assert f"Access request #{request.pk}" in post["text"]
    assert mail_sink.to(world.requester.email) == []


def test_failing_mail_server_and_webhook_never_lose_or_block_the_decision(
    world: World, mail_sink: MailSink, webhook_sink: WebhookSink
) -> None:
    request = submit(world)
    wait_for(lambda: len(mail_sink.messages) == 2 and webhook_sink.posts, what="request notices")
    mail_sink.fail_next = 2
    webhook_sink.fail_next = 2

    decided = workflow.decide_request(
        request, actor=world.approver, decision="approve", comment="go", now=timezone.now()
    )

    # The decision is committed and the grant usable before any notice is delivered.
    assert decided.state == AccessRequest.State.APPROVED
    assert Grant.objects.filter(request=request, state="active").exists()
    (message,) = wait_for(
        lambda: mail_sink.to(world.requester.email), timeout=60, what="decision mail after retries"
    )
    assert "approved" in message["Subject"]
    assert "go" in message.get_payload()
    wait_for(lambda: len(webhook_sink.posts) == 2, timeout=60, what="webhook after retries")
    assert (mail_sink.refused, webhook_sink.refused) == (2, 2)
    # Meanwhile the worker's per-second sweep left the still-eligible holder's grant alone.
    assert Grant.objects.get(request=request).state == Grant.State.ACTIVE


def test_beat_expires_grants_and_undecided_requests_on_time(world: World) -> None:
    now = timezone.now()
    grant = GrantFactory(
        request__requester=world.requester,
        request__account=world.dev,
        request__role=world.admin_role,
        starts_at=now - timedelta(minutes=30),
        ends_at=now + timedelta(seconds=2),
    )
    stale = AccessRequestFactory(
        requester=world.requester,
        account=world.prod,
        role=world.admin_role,
        created_at=now - timedelta(hours=24),
        decide_by=now + timedelta(seconds=2),
    )

    wait_for(
        lambda: Grant.objects.filter(pk=grant.pk, state="expired").exists(),
        timeout=30,
        what="the grant to expire",
    )
    wait_for(
        lambda: AccessRequest.objects.filter(pk=stale.pk, state="expired").exists(),
        timeout=30,
        what="the request to expire",
    )
    expired = AuditEvent.objects.get(event_type="grant.expired")
    assert expired.at >= grant.ends_at  # never before its end
    assert expired.actor == "system"


def test_revocation_deny_policy_is_put_by_the_worker(world: World, aws: MotoServer) -> None:
    boto3.client("iam").create_role(
        RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    request = submit(world)
    workflow.decide_request(request, actor=world.approver, decision="approve", now=timezone.now())
    grant = Grant.objects.get(request=request)

    grants.revoke_grant(grant, actor=world.second_approver, now=timezone.now(), reason="done")

    wait_for(
        lambda: Grant.objects.filter(pk=grant.pk, revocation_applied_at__isnull=False).exists(),
        what="the deny policy",
    )
    (entry,) = iam.list_revocations(grant.role_arn)
    assert entry.source_identity == world.requester.email
    assert AuditEvent.objects.filter(event_type="grant.revocation_policy_applied").count() == 1


def test_worker_is_a_separate_process_on_the_redis_broker(celery_worker: Worker) -> None:
    assert celery_worker.process.poll() is None
    # The worker reads the broker from CELERY_BROKER_URL, which the fixture points at BROKER_URL.
    assert f"Connected to {Connection(BROKER_URL).as_uri()}" in celery_worker.output()
