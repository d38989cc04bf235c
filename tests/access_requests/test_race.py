"""No double grant under concurrent clicks (SECURITY.md §5): approvers deciding at the same moment
from separate threads, each with its own PostgreSQL connection, against committed data."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from access_requests import refusals
from access_requests.models import AccessRequest, Approval, Grant
from access_requests.services import workflow
from federation.models import AuditEvent, User
from tests.access_requests.conftest import World, build_world
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run each call in its own thread (own DB connection), released by one barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = calls[index]()
        except Exception as exc:  # the refusal is the expected outcome for all but one
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def file_request(world: World, account: str) -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id=account,
        role="admin",
        justification="incident",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )


def approve_call(request_id: int, approver: User) -> Callable[[], object]:
    return lambda: workflow.decide_request(
        request_id, actor=approver, decision="approve", now=timezone.now()
    )


def test_two_approvers_deciding_at_the_same_moment_create_exactly_one_grant() -> None:
    world = build_world()
    for _ in range(10):
        request = file_request(world, "111111111111")

        results = run_at_once(
            [
                approve_call(request.pk, world.approver),
                approve_call(request.pk, world.second_approver),
            ]
        )

        winners = [r for r in results if isinstance(r, AccessRequest)]
        losers = [r for r in results if isinstance(r, refusals.RequestNotPending)]
        assert (len(winners), len(losers)) == (1, 1), results
        assert Grant.objects.filter(request=request).count() == 1
        granted = AuditEvent.objects.filter(event_type="grant.granted", data__request_id=request.pk)
        assert granted.count() == 1
        assert Approval.objects.filter(request=request).count() == 1
        Grant.objects.filter(request=request).update(state="expired")


def test_three_prod_approvers_at_once_make_one_grant_from_two_distinct_votes() -> None:
    world = build_world()
    third = UserFactory(username="carl", directory_groups=["aws-pb-managers"])
    request = file_request(world, "222222222222")

    results = run_at_once(
        [
            approve_call(request.pk, world.approver),
            approve_call(request.pk, world.second_approver),
            approve_call(request.pk, third),
        ]
    )

    assert sum(isinstance(r, refusals.RequestNotPending) for r in results) == 1, results
    request.refresh_from_db()
    assert request.state == AccessRequest.State.APPROVED
    assert Grant.objects.filter(request=request).count() == 1
    assert Approval.objects.filter(request=request, decision="approve").count() == 2
    assert AuditEvent.objects.filter(event_type="grant.granted").count() == 1


def test_concurrent_approve_and_deny_leave_one_consistent_outcome() -> None:
    world = build_world()
    request = file_request(world, "111111111111")

    results = run_at_once(
        [
            approve_call(request.pk, world.approver),
            lambda: workflow.decide_request(
                request.pk, actor=world.second_approver, decision="deny", now=timezone.now()
            ),
        ]
    )

    assert sum(isinstance(r, refusals.RequestNotPending) for r in results) == 1, results
    request.refresh_from_db()
    assert Grant.objects.filter(request=request).count() == (
        1 if request.state == AccessRequest.State.APPROVED else 0
    )


def test_double_click_on_send_request_files_one_request() -> None:
    world = build_world()

    results = run_at_once(
        [lambda: file_request(world, "111111111111"), lambda: file_request(world, "111111111111")]
    )

    assert sum(isinstance(r, AccessRequest) for r in results) == 1, results
    assert sum(isinstance(r, refusals.DuplicateRequest) for r in results) == 1, results
    assert AccessRequest.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="access_request.submitted").count() == 1
