"""Applying and rolling back the roles from the web page (issue #13 §3): a rollout that touches
prod waits for a second administrator (any identity of the proposer is refused), runs the same
waves through the effect outbox, and is audited; ``roles_apply --rollback`` re-applies the
documents of each account's previous successful rollout. Against moto over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.models import OutboxEffect
from federation.mappings import apply_document, parse_document
from federation.models import AuditEvent, Rollout, User
from federation.provisioning.drift import check_drift
from tests.factories import UserFactory
from tests.federation.test_provisioning_plan import (
    CANARY,
    DEV,
    DW_PROD,
    MOMENT,
    PROD,
    TABLES,
    World,
    run,
    world,
)

__all__ = ["world"]

Capture = Callable[..., Any]


@pytest.fixture
def admins(settings: SettingsWrapper) -> tuple[User, User]:
    settings.ADMIN_GROUPS, settings.AUDITOR_GROUPS = ["fed-admins"], ["fed-auditors"]
    return (
        UserFactory(email="alice@corp.example", directory_groups=["fed-admins"]),
        UserFactory(email="bob@corp.example", directory_groups=["fed-admins"]),
    )


def as_user(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client: Client, url: str, capture: Capture, **data: Any) -> Any:
    # The outbox publishes after commit; eager Celery then runs the task in this process.
    with capture(execute=True):
        return client.post(url, data)


def events(kind: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=kind).order_by("pk"))


def test_a_plan_without_prod_applies_at_once_from_the_page(
    world: World, admins: tuple[User, User], django_capture_on_commit_callbacks: Capture
) -> None:
    alice, _ = admins
    client = as_user(alice)
    page = client.get(f"/drift/apply/?account={CANARY}&account={DEV}").content.decode()
    assert "+ create role cloud-eng" in page and ">Apply</button>" in page

    response = post(
        client, "/drift/apply/", django_capture_on_commit_callbacks, account=[CANARY, DEV]
    )

    rollout = Rollout.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/drift/rollouts/{rollout.pk}/"
    assert (rollout.state, rollout.needs_approval, rollout.requested_by) == ("done", False, alice)
    assert world.role_names(CANARY) == world.role_names(DEV) == ["cloud-eng"]
    assert world.role_names(PROD) == []
    assert OutboxEffect.objects.get(task="federation.provisioning.run_rollout").done_at
    [started] = events("provisioning.rollout_started")
    assert started.actor == alice.label
    assert [e.account_id for e in events("provisioning.account_applied")] == [CANARY, DEV]
    detail = client.get(f"/drift/rollouts/{rollout.pk}/").content.decode()
    assert "Roll back" in detail and "create cloud-eng: missing" in detail


def test_a_plan_touching_prod_waits_for_a_second_admin(
    world: World, admins: tuple[User, User], django_capture_on_commit_callbacks: Capture
) -> None:
    alice, bob = admins
    alice_elsewhere = UserFactory(email=alice.email, directory_groups=["fed-admins"])
    capture = django_capture_on_commit_callbacks

    post(as_user(alice), "/drift/apply/", capture)
    rollout = Rollout.objects.get()
    assert (rollout.state, rollout.needs_approval) == ("proposed", True)
    assert [world.role_names(a) for a in (CANARY, PROD)] == [[], []]
    assert (
        "needs a second administrator"
        not in as_user(alice).get(f"/drift/rollouts/{rollout.pk}/").content.decode()
    )

    for proposer in (alice, alice_elsewhere):
        response = post(as_user(proposer), f"/drift/rollouts/{rollout.pk}/approve/", capture)
        assert response.status_code == 302
        rollout.refresh_from_db()
        assert rollout.state == "proposed"
    refused = events("provisioning.rollout_refused")
    assert [e.data["reason"] for e in refused] == ["provisioning.self_approval"] * 2
    assert world.role_names(PROD) == []

    post(as_user(bob), f"/drift/rollouts/{rollout.pk}/approve/", capture)

    rollout.refresh_from_db()
    assert (rollout.state, rollout.approved_by) == ("done", bob)
    assert world.role_names(PROD) == ["admin", "cloud-eng"]
    assert world.role_names(DW_PROD) == ["admin"]
    assert [e.actor for e in events("provisioning.rollout_approved")] == [bob.label]
    # The waves ran in order, every account audited under the approver.
    applied = events("provisioning.account_applied")
    assert [e.account_id for e in applied] == [CANARY, DEV, PROD, DW_PROD]
    assert {e.actor for e in applied} == {bob.label}


def test_approving_a_plan_the_tables_moved_past_cancels_it(
    world: World, admins: tuple[User, User], django_capture_on_commit_callbacks: Capture
) -> None:
    alice, bob = admins
    capture = django_capture_on_commit_callbacks
    post(as_user(alice), "/drift/apply/", capture)
    apply_document(
        parse_document(TABLES.replace("max_session_minutes: 120", "max_session_minutes: 240")),
        actor="test",
        source="import",
        now=MOMENT,
    )

    page = as_user(bob).post(f"/drift/rollouts/{Rollout.objects.get().pk}/approve/", follow=True)

    assert "The tables changed since rollout" in page.content.decode()
    assert Rollout.objects.get().state == "cancelled"
    assert world.role_names(CANARY) == []


def test_only_admins_apply_and_bad_requests_are_refused(
    world: World, admins: tuple[User, User], django_capture_on_commit_callbacks: Capture
) -> None:
    alice, bob = admins
    auditor = as_user(UserFactory(directory_groups=["fed-auditors"]))
    assert auditor.get("/drift/apply/").status_code == 403
    assert auditor.post("/drift/apply/").status_code == 403
    assert Rollout.objects.count() == 0

    post(as_user(alice), "/drift/apply/", django_capture_on_commit_callbacks)
    pk = Rollout.objects.get().pk
    assert auditor.get(f"/drift/rollouts/{pk}/").status_code == 200
    assert auditor.post(f"/drift/rollouts/{pk}/approve/").status_code == 403
    assert as_user(bob).get(f"/drift/rollouts/{pk}/approve/").status_code == 405
    assert as_user(bob).post(f"/drift/rollouts/{pk}/launch/").status_code == 404
    assert as_user(bob).post("/drift/rollouts/999999/approve/").status_code == 404
    assert as_user(bob).get("/drift/apply/?account=nope").status_code == 404
    assert as_user(bob).post("/drift/apply/", {"account": "nope"}).status_code == 404

    as_user(alice).post(f"/drift/rollouts/{pk}/cancel/", {"comment": "not today"})
    assert Rollout.objects.get().state == "cancelled"
    page = as_user(bob).post(f"/drift/rollouts/{pk}/approve/", follow=True).content.decode()
    assert "only a proposed one can be approved" in page
    assert world.role_names(CANARY) == []


def _two_rollouts(world: World) -> tuple[Rollout, Rollout]:
    assert run("roles_apply", "--yes")[0] == 0
    apply_document(
        parse_document(TABLES.replace("max_session_minutes: 120", "max_session_minutes: 240")),
        actor="test",
        source="import",
        now=MOMENT,
    )
    assert run("roles_apply", "--yes")[0] == 0
    first, second = Rollout.objects.order_by("pk")
    return first, second


def test_rollback_reapplies_the_previous_rollouts_documents(world: World) -> None:
    first, second = _two_rollouts(world)
    assert world.role(PROD, "cloud-eng")["MaxSessionDuration"] == 14400

    code, out, err = run("roles_apply", "--rollback", str(second.pk), "--yes")

    assert code == 0, out + err
    assert f"{PROD} (pb-prod): the documents of rollout {first.pk}" in out
    rollback = Rollout.objects.order_by("pk").last()
    assert rollback is not None
    assert (rollback.kind, rollback.rolls_back, rollback.state) == ("rollback", second, "done")
    for account in (CANARY, DEV, PROD):
        assert world.role(account, "cloud-eng")["MaxSessionDuration"] == 7200
    started = events("provisioning.rollout_started")[-1]
    assert (started.data["kind"], started.data["rolls_back"]) == ("rollback", second.pk)
    # The accounts are back; the tables are not: drift says so until they are.
    assert check_drift(now=MOMENT).new == 3


def test_a_rollout_with_no_earlier_one_cannot_be_rolled_back(world: World) -> None:
    first, _ = _two_rollouts(world)

    code, _, err = run("roles_apply", "--rollback", str(first.pk), "--yes")

    assert code == 1
    assert f"no earlier successful rollout touched {CANARY} (pb-canary)" in err
    assert Rollout.objects.count() == 2
    assert run("roles_apply", "--rollback", "424242", "--yes")[2].endswith(
        "there is no rollout 424242"
    )


def test_rolling_back_prod_from_the_page_needs_a_second_admin(
    world: World, admins: tuple[User, User], django_capture_on_commit_callbacks: Capture
) -> None:
    alice, bob = admins
    _, second = _two_rollouts(world)
    capture = django_capture_on_commit_callbacks

    response = post(as_user(alice), f"/drift/rollouts/{second.pk}/rollback/", capture)

    rollback = Rollout.objects.order_by("pk").last()
    assert rollback is not None and response["Location"] == f"/drift/rollouts/{rollback.pk}/"
    assert (rollback.kind, rollback.state) == ("rollback", "proposed")
    post(as_user(alice), f"/drift/rollouts/{rollback.pk}/approve/", capture)
    assert world.role(PROD, "cloud-eng")["MaxSessionDuration"] == 14400

    post(as_user(bob), f"/drift/rollouts/{rollback.pk}/approve/", capture)

    rollback.refresh_from_db()
    assert rollback.state == "done"
    assert world.role(PROD, "cloud-eng")["MaxSessionDuration"] == 7200
