"""/metrics for the request workflow (issue 18 item 3): requests and decisions by state, grants,
and refusals, counted when their transaction commits; pending requests and active grants read
from the rows at scrape time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from access_requests.refusals import SelfApprovalRefused
from access_requests.services import grants, workflow
from tests.access_requests.conftest import World
from tests.metrics import Scrape, scrape

pytestmark = pytest.mark.django_db

Capture = Callable[..., Any]


def _grew(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_a_request_decided_and_revoked_moves_its_counters_and_gauges(
    world: World, django_capture_on_commit_callbacks: Capture
) -> None:
    now = timezone.now()
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        request = workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="INC-1",
            duration=timedelta(hours=1),
            now=now,
        )
    pending = scrape()
    assert _grew(before, pending, "fedaccess_access_requests_total", state="pending") == 1
    assert pending.value("fedaccess_access_requests_pending") == 1
    assert pending.value("fedaccess_grants_active") == 0

    with django_capture_on_commit_callbacks(execute=True):
        workflow.decide_request(request, actor=world.approver, decision="approve", now=now)
    approved = scrape()
    assert _grew(pending, approved, "fedaccess_access_request_decisions_total",
                 decision="approve") == 1  # fmt: skip
    assert _grew(pending, approved, "fedaccess_access_requests_total", state="approved") == 1
    assert _grew(pending, approved, "fedaccess_grants_total", state="active") == 1
    assert approved.value("fedaccess_access_requests_pending") == 0
    assert approved.value("fedaccess_grants_active") == 1

    with django_capture_on_commit_callbacks(execute=True):
        grants.revoke_grant(request.grant, actor=world.approver, reason="done", now=now)
    revoked = scrape()
    assert _grew(approved, revoked, "fedaccess_grants_total", state="revoked") == 1
    assert revoked.value("fedaccess_grants_active") == 0


def test_a_denial_and_a_refused_self_approval_are_counted(
    world: World, django_capture_on_commit_callbacks: Capture
) -> None:
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        request = workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="INC-2",
            duration=timedelta(hours=1),
            now=now,
        )
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SelfApprovalRefused):
        workflow.decide_request(request, actor=world.requester, decision="approve", now=now)
    with django_capture_on_commit_callbacks(execute=True):
        workflow.decide_request(request, actor=world.approver, decision="deny", now=now)
    after = scrape()

    refused = {"event": "access_request.decision_refused", "reason": "self_approval"}
    assert _grew(before, after, "fedaccess_refusals_total", **refused) == 1
    assert _grew(before, after, "fedaccess_access_request_decisions_total", decision="deny") == 1
    assert _grew(before, after, "fedaccess_access_requests_total", state="denied") == 1
    # The refused vote is no decision.
    assert _grew(before, after, "fedaccess_access_request_decisions_total",
                 decision="approve") == 0  # fmt: skip
