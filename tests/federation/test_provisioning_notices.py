"""Tasks of the control loop on real parts: new drift tells the admins once, by mail and webhook,
and an approved rollout runs on the worker, both through the effect outbox. A real Celery worker
on Redis, a local SMTP server and webhook receiver, IAM on moto over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.models import OutboxEffect
from federation.models import AuditEvent, DriftFinding, Rollout
from federation.provisioning.approval import approve_rollout, propose_rollout
from federation.provisioning.drift import check_drift
from federation.provisioning.notices import build_drift_notice
from tests.access_requests.live import (
    BROKER_URL,
    MailSink,
    WebhookSink,
    Worker,
    mail_sink,
    run_worker,
    wait_for,
    webhook_sink,
    worker_database_url,
)
from tests.aws import MotoServer
from tests.factories import UserFactory
from tests.federation.test_provisioning_plan import (
    BROKER,
    CANARY,
    DEV,
    DW_PROD,
    MANAGEMENT,
    PROD,
    World,
    provision_by_hand,
    run,
    wanted,
    world,
)

__all__ = ["mail_sink", "webhook_sink", "world"]

pytestmark = pytest.mark.django_db(transaction=True)

DRIFT_TASKS = (
    "federation.provisioning.send_drift_email",
    "federation.provisioning.post_drift_webhook",
)


@pytest.fixture(scope="module")
def drift_worker(
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
        ADMIN_GROUPS="fed-admins",
        # The worker reaches the accounts as the test process does (configure(), test_plan).
        IAM_MANAGEMENT_ROLE_NAME=MANAGEMENT,
        BROKER_PRINCIPAL_ARN=BROKER,
        STS_REGIONS="us-east-1",
        STS_BROKER_CHAINED="false",
    )


@pytest.fixture
def admins(settings: SettingsWrapper, webhook_sink: WebhookSink, mail_sink: MailSink) -> Any:
    settings.ADMIN_GROUPS = ["fed-admins"]
    settings.SLACK_WEBHOOK_URL = webhook_sink.url
    mail_sink.reset()
    webhook_sink.reset()
    first = UserFactory(email="ops-1@corp.example", directory_groups=["fed-admins"])
    second = UserFactory(email="ops-2@corp.example", directory_groups=["fed-admins"])
    UserFactory(email="someone@corp.example", directory_groups=["employees"])
    yield first, second
    mail_sink.reset()
    webhook_sink.reset()


def _all_done() -> bool:
    return not OutboxEffect.objects.filter(done_at__isnull=True).exists()


def _owed() -> list[str]:
    return sorted(OutboxEffect.objects.filter(task__in=DRIFT_TASKS).values_list("task", flat=True))


def test_new_drift_mails_each_admin_and_posts_the_webhook_once(
    world: World,
    admins: Any,
    drift_worker: Worker,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
) -> None:
    provision_by_hand(world)
    anyone = wanted(PROD, "admin").trust_policy
    anyone["Statement"][0]["Principal"] = {"AWS": "*"}
    world.iam(PROD).update_assume_role_policy(RoleName="admin", PolicyDocument=json.dumps(anyone))
    world.iam(DEV).update_role(RoleName="cloud-eng", MaxSessionDuration=43200)
    first = timezone.now()

    assert check_drift(now=first).new == 2

    for admin in admins:
        (message,) = wait_for(lambda a=admin: mail_sink.to(a.email), what="drift mail")
        assert message["Subject"] == "Drift: 2 role(s) in 2 account(s) differ from the tables"
        body = message.get_payload()
        assert f"pb-prod ({PROD}) role admin: update" in body
        assert "  - trust policy differs" in body
        assert "session length 43200s, wanted 7200s" in body
        assert "/drift/" in body
        assert '"Principal"' not in body  # what differs, never the documents
    (post,) = wait_for(lambda: webhook_sink.posts, what="drift webhook post")
    assert post["text"].startswith("Drift: 2 role(s) in 2 account(s)")
    assert mail_sink.to("someone@corp.example") == []
    wait_for(
        lambda: (
            OutboxEffect.objects.filter(task__in=DRIFT_TASKS, done_at__isnull=False).count() == 2
        ),
        what="both effects done",
    )

    # The same drift seen by later checks owes nothing more; repairing it owes nothing either.
    assert check_drift(now=first + timedelta(hours=1)).new == 0
    assert run("roles_apply", "--yes")[0] == 0
    report = check_drift(now=first + timedelta(hours=2))
    assert (report.new, report.resolved) == (0, 2)
    assert _owed() == sorted(DRIFT_TASKS)
    assert AuditEvent.objects.filter(event_type="provisioning.drift_resolved").count() == 2

    # Drift that comes back is new drift, and is told again.
    world.iam(DEV).update_role(RoleName="cloud-eng", MaxSessionDuration=43200)
    assert check_drift(now=first + timedelta(hours=3)).new == 1
    wait_for(lambda: len(mail_sink.to(admins[0].email)) == 2, what="second drift mail")
    assert len(_owed()) == 4
    # Nothing left running on the worker when the database is flushed for the next test.
    wait_for(_all_done, what="every drift effect delivered")


def test_without_a_webhook_only_mail_is_owed(
    world: World, admins: Any, settings: SettingsWrapper, drift_worker: Worker
) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    provision_by_hand(world)
    world.iam(PROD).update_role(RoleName="admin", MaxSessionDuration=43200)

    check_drift(now=timezone.now())

    assert _owed() == ["federation.provisioning.send_drift_email"]
    wait_for(_all_done, what="the drift mail delivered")


def test_a_drift_storm_makes_one_short_notice(world: World, admins: Any) -> None:
    now = timezone.now()
    findings = [
        DriftFinding.objects.create(
            account_id=PROD,
            account_alias="pb-prod",
            role_name=f"role-{i:03}",
            action="create",
            differences=["missing"],
            first_seen=now,
            last_seen=now,
        )
        for i in range(120)
    ]

    notice = build_drift_notice([f.pk for f in findings])

    assert notice.recipients == ("ops-1@corp.example", "ops-2@corp.example")
    assert notice.subject == "Drift: 120 role(s) in 1 account(s) differ from the tables"
    assert "role-049" in notice.body and "role-050" not in notice.body
    assert "... and 70 more" in notice.body


def test_an_approved_rollout_runs_its_waves_on_the_worker(
    world: World, admins: Any, drift_worker: Worker
) -> None:
    alice, bob = admins
    rollout = propose_rollout(actor=alice, now=timezone.now())
    assert rollout is not None and rollout.state == "proposed"

    approve_rollout(rollout.pk, actor=bob, now=timezone.now())

    wait_for(
        lambda: Rollout.objects.filter(pk=rollout.pk, state="done").exists(),
        timeout=120,
        what=f"the worker to run rollout {rollout.pk}",
    )
    assert [world.role_names(a) for a in (CANARY, PROD, DW_PROD)] == [
        ["cloud-eng"],
        ["admin", "cloud-eng"],
        ["admin"],
    ]
    applied = AuditEvent.objects.filter(event_type="provisioning.account_applied").order_by("pk")
    assert [e.account_id for e in applied] == [CANARY, DEV, PROD, DW_PROD]
    assert {e.actor for e in applied} == {bob.label}
    wait_for(_all_done, what="the rollout's effect marked done")
