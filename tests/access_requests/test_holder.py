"""What a requester sees and does with their own requests: the votes and comments so far, who
revoked their grant and why, and ending their own grant early (a revocation, denied in IAM)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from access_requests import refusals
from access_requests.models import Grant
from access_requests.services import grants, workflow
from federation.models import AuditEvent
from tests.access_requests.conftest import World, approved_request, usable_access
from tests.access_requests.test_revocation import create_role, policy_statements
from tests.aws import MotoServer

pytestmark = pytest.mark.django_db


def granted(world: World, now: Any) -> Grant:
    request = approved_request(world, now, justification="incident", duration=timedelta(hours=2))
    return Grant.objects.get(request=request)


def test_holder_ends_their_grant_early_and_its_sessions_are_denied(
    world: World, aws: MotoServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    create_role("admin")
    now = timezone.now().replace(microsecond=0)
    grant = granted(world, now - timedelta(minutes=10))

    with django_capture_on_commit_callbacks(execute=True):
        grants.end_grant(grant.pk, actor=world.requester, now=now)

    grant.refresh_from_db()
    assert (grant.state, grant.revoked_by, grant.revoked_at) == ("revoked", world.requester, now)
    assert grant.revoke_reason == "ended early by its holder"
    assert grant.revocation_applied_at is not None
    assert usable_access(world.requester, "111111111111", at=now) == "eligible"
    (statement,) = policy_statements()
    assert statement["Condition"]["StringEquals"] == {"aws:SourceIdentity": world.requester.email}
    event = AuditEvent.objects.get(event_type="grant.ended")
    assert (event.actor_user, event.data["grant_id"]) == (world.requester, grant.pk)


def test_only_the_holder_ends_a_grant_and_only_while_active(world: World) -> None:
    now = timezone.now()
    grant = granted(world, now - timedelta(minutes=10))

    with pytest.raises(refusals.NotTheHolder):
        grants.end_grant(grant.pk, actor=world.approver, now=now)  # approvers revoke instead
    with pytest.raises(refusals.NotFound):
        grants.end_grant(grant.pk, actor=world.outsider, now=now)
    with pytest.raises(refusals.NotFound):
        grants.end_grant(999_999, actor=world.requester, now=now)
    with pytest.raises(refusals.GrantNotActive):
        grants.end_grant(grant.pk, actor=world.requester, now=now + timedelta(hours=3))
    grant.refresh_from_db()
    assert grant.state == "active"
    refused = AuditEvent.objects.filter(event_type="grant.end_refused")
    assert sorted(refused.values_list("data__reason", flat=True)) == [
        "grant_not_active",
        "not_found",
        "not_found",
        "not_the_holder",
    ]

    grants.end_grant(grant.pk, actor=world.requester, now=now)
    with pytest.raises(refusals.GrantNotActive):
        grants.end_grant(grant.pk, actor=world.requester, now=now)


def test_requests_page_ends_a_grant_after_asking(client: Client, world: World) -> None:
    now = timezone.now()
    grant = granted(world, now - timedelta(minutes=10))
    client.force_login(world.requester)

    body = client.get("/requests/").content.decode()
    assert f'action="/requests/grants/{grant.pk}/end/"' in body
    assert f'data-confirm="End grant #{grant.pk} now?' in body
    assert client.get(f"/requests/grants/{grant.pk}/end/").status_code == 405

    response = client.post(f"/requests/grants/{grant.pk}/end/", follow=True)
    assert f"Grant #{grant.pk} ended" in response.content.decode()
    grant.refresh_from_db()
    assert grant.state == "revoked"
    assert "you ended it" in response.content.decode()
    assert f'action="/requests/grants/{grant.pk}/end/"' not in response.content.decode()


def test_another_persons_grant_cannot_be_ended_from_the_page(client: Client, world: World) -> None:
    grant = granted(world, timezone.now() - timedelta(minutes=10))
    client.force_login(world.outsider)
    assert client.post(f"/requests/grants/{grant.pk}/end/").status_code == 404
    client.force_login(world.approver)
    client.post(f"/requests/grants/{grant.pk}/end/")
    grant.refresh_from_db()
    assert grant.state == "active"


def test_requester_sees_votes_with_comments_and_who_revoked_and_why(
    client: Client, world: World
) -> None:
    now = timezone.now()
    pending = workflow.submit_request(
        world.requester,
        account_id="222222222222",
        role="admin",
        justification="prod fix",
        duration=timedelta(hours=1),
        now=now,
    )
    workflow.decide_request(
        pending, actor=world.approver, decision="approve", comment="ok for CHG-9", now=now
    )
    grant = granted(world, now - timedelta(minutes=10))
    grants.revoke_grant(grant, actor=world.second_approver, now=now, reason="done, thanks")
    client.force_login(world.requester)

    body = client.get("/requests/").content.decode()
    assert "approved</span> by anna@corp.example" in body
    assert "“ok for CHG-9”" in body
    assert "1 of 2 approvals so far" in body
    assert "revoked by bob@corp.example" in body
    assert "“done, thanks”" in body
