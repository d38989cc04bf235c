"""Answers never cross business units (issue 12 item 9): someone who may not see a request or a
grant gets the same status, body and audit shape whether it exists or not, and approvers see
only the requests of units they approve for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from access_requests import refusals
from access_requests.models import AccessRequest, Grant
from access_requests.services import workflow
from federation.models import Access, AuditEvent
from tests.access_requests.conftest import World
from tests.factories import AccountFactory, BusinessUnitFactory, GroupMappingFactory, UserFactory

pytestmark = pytest.mark.django_db

MISSING = 987654


@pytest.fixture
def dw(world: World) -> None:
    """A second unit, Data Warehouse, whose approvers are ``world.outsider``'s group."""
    unit = BusinessUnitFactory(slug="dw", approver_groups=["aws-dw-managers"])
    AccountFactory(alias="dw-dev", account_id="333333333333", business_unit=unit)
    GroupMappingFactory(
        group="aws-dw-admin",
        role=world.admin_role,
        business_unit=unit,
        access=Access.ELIGIBLE,
        max_grant=timedelta(hours=4),
    )


def file(world: World, account: str = "111111111111") -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id=account,
        role="admin",
        justification="INC-1",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )


def answer(client: Client, url: str, data: dict[str, str], real_id: int) -> tuple[int, str]:
    response = client.post(url, data)
    body = response.content.decode().replace(str(real_id), "ID").replace(str(MISSING), "ID")
    return response.status_code, body


def refusal_shape(event: AuditEvent) -> dict[str, Any]:
    # The ids differ between the two requests by nature: the access request's and the HTTP one.
    data = {k: v for k, v in event.data.items() if k not in ("request_id", "http_request_id")}
    return {
        "type": event.event_type,
        "account_id": event.account_id,
        "target": event.target.replace(str(MISSING), "ID").split("#")[0],
        "data": data,
    }


def same_answer_for_real_and_missing(
    client: Client, url_of: str, data: dict[str, str], real_id: int, event_type: str
) -> None:
    real = answer(client, url_of.format(real_id), data, real_id)
    missing = answer(client, url_of.format(MISSING), data, real_id)
    assert real == missing
    assert real[0] == 404
    first, second = AuditEvent.objects.filter(event_type=event_type).order_by("seq")
    assert refusal_shape(first) == refusal_shape(second)
    assert first.account_id == "" and "state" not in first.data
    assert first.data["reason"] == "not_found"


def test_deciding_another_units_request_answers_as_for_an_unknown_id(
    client: Client, world: World
) -> None:
    request = file(world)
    client.force_login(world.outsider)

    same_answer_for_real_and_missing(
        client,
        "/approvals/{}/decide/",
        {"decision": "approve"},
        request.pk,
        "access_request.decision_refused",
    )
    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING


def test_a_decided_requests_state_is_not_told_to_another_unit(client: Client, world: World) -> None:
    request = file(world)
    workflow.decide_request(request, actor=world.approver, decision="deny", now=timezone.now())
    client.force_login(world.outsider)

    same_answer_for_real_and_missing(
        client,
        "/approvals/{}/decide/",
        {"decision": "deny"},
        request.pk,
        "access_request.decision_refused",
    )


def test_cancelling_someone_elses_request_from_another_unit_answers_as_unknown(
    client: Client, world: World
) -> None:
    request = file(world)
    client.force_login(world.outsider)

    same_answer_for_real_and_missing(
        client, "/requests/{}/cancel/", {}, request.pk, "access_request.cancel_refused"
    )
    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING


def test_revoking_another_units_grant_answers_as_unknown(client: Client, world: World) -> None:
    request = file(world)
    workflow.decide_request(request, actor=world.approver, decision="approve", now=timezone.now())
    grant = Grant.objects.get(request=request)
    client.force_login(world.outsider)

    same_answer_for_real_and_missing(
        client,
        "/approvals/grants/{}/revoke/",
        {"reason": "x"},
        grant.pk,
        "grant.revoke_refused",
    )
    grant.refresh_from_db()
    assert grant.state == Grant.State.ACTIVE


def test_who_may_see_a_request_is_still_told_why(world: World) -> None:
    request = file(world)
    # The requester sees their own request: cancelling it twice says it is cancelled.
    workflow.cancel_request(request, actor=world.requester, now=timezone.now())
    with pytest.raises(refusals.RequestNotPending, match="cancelled"):
        workflow.cancel_request(request, actor=world.requester, now=timezone.now())
    # An approver of the unit is told the state too.
    with pytest.raises(refusals.RequestNotPending, match="cancelled"):
        workflow.decide_request(
            request, actor=world.approver, decision="approve", now=timezone.now()
        )


@pytest.mark.usefixtures("dw")
def test_approvers_see_a_requesters_history_only_in_units_they_approve_for(
    client: Client, world: World
) -> None:
    world.requester.directory_groups = [*world.requester.directory_groups, "aws-dw-admin"]
    world.requester.save()
    pb_earlier = file(world)
    workflow.cancel_request(pb_earlier, actor=world.requester, now=timezone.now())
    dw_earlier = file(world, account="333333333333")
    workflow.cancel_request(dw_earlier, actor=world.requester, now=timezone.now())
    dw_pending = file(world, account="333333333333")
    file(world)  # pending in pb, for the pb approver

    client.force_login(world.outsider)  # approves for dw only
    page = client.get("/approvals/").content.decode()
    assert f'data-request="{dw_pending.pk}"' in page
    assert f"#{dw_earlier.pk} admin in dw-dev: cancelled" in page
    assert "pb-dev" not in page and f"#{pb_earlier.pk} " not in page
    # Of the requester's groups, only those this unit maps are shown.
    assert "aws-dw-admin" in page and "aws-pb-admin" not in page and "aws-pb-cloud-eng" not in page

    client.force_login(world.approver)  # approves for pb only
    page = client.get("/approvals/").content.decode()
    assert f"#{pb_earlier.pk} admin in pb-dev: cancelled" in page
    assert "dw-dev" not in page


@pytest.mark.usefixtures("dw")
def test_requesting_another_units_account_answers_as_for_an_unknown_account(
    world: World,
) -> None:
    refused = []
    for account in ("333333333333", "444444444444"):  # dw's, and nobody's
        with pytest.raises(refusals.NotEligible) as caught:
            file(world, account=account)
        refused.append((caught.value.status, caught.value.message.replace(account, "A")))
    assert refused[0] == refused[1]
    events = AuditEvent.objects.filter(event_type="access_request.refused").order_by("seq")
    assert [e.account_id for e in events] == ["", ""]


def test_an_approvers_second_identity_elsewhere_sees_nothing_more(world: World) -> None:
    # Reach is judged on the identity's own groups, never widened through the person.
    twin = UserFactory(email=world.approver.email, directory_groups=["employees"])
    request = file(world)
    with pytest.raises(refusals.RequestNotFound):
        workflow.decide_request(request, actor=twin, decision="approve", now=timezone.now())
