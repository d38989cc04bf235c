"""The approvers' and requesters' JSON API (issue 20): list what I may decide, decide with a
comment; list and cancel my requests; JSON for every refusal and for wrong methods."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from access_requests.models import AccessRequest, Approval
from access_requests.services import workflow
from federation.issuance.tokens import create_api_token
from federation.models import AuditEvent, User
from tests.access_requests.conftest import World

pytestmark = pytest.mark.django_db


def bearer(user: User) -> dict[str, str]:
    # Tokens work for people who signed in lately (tokens.py).
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    token = create_api_token(
        user, name="t", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def pending(world: World, account: str = "222222222222") -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id=account,
        role="admin",
        justification="INC-4 prod fix",
        ticket="INC-4",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )


def post(client: Client, url: str, body: Any, auth: dict[str, str]) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", **auth)


def test_approver_lists_waiting_requests_and_decides_with_a_comment(
    client: Client, world: World
) -> None:
    waiting = pending(world)
    auth = bearer(world.approver)

    listed = client.get("/api/v1/approvals", **auth)
    assert listed.status_code == 200
    (item,) = listed.json()["requests"]
    assert (item["id"], item["requester"], item["justification"]) == (
        waiting.pk,
        "rita@corp.example",
        "INC-4 prod fix",
    )
    assert (item["approvals_required"], item["environment"], item["votes"]) == (2, "prod", [])

    decided = post(
        client,
        f"/api/v1/approvals/{waiting.pk}/decision",
        {"decision": "approve", "comment": "ok, watch INC-4"},
        auth,
    )
    assert decided.status_code == 200
    assert decided.json() == {
        "id": waiting.pk,
        "state": "pending",  # prod needs a second approver
        "decision": "approve",
        "comment": "ok, watch INC-4",
    }
    vote = Approval.objects.get(request=waiting)
    assert (vote.approver, vote.comment) == (world.approver, "ok, watch INC-4")
    assert client.get("/api/v1/approvals", **auth).json() == {"requests": []}  # voted already

    # The requester reads the vote and its comment back.
    mine = client.get(f"/api/v1/requests/{waiting.pk}", **bearer(world.requester)).json()
    assert [(v["approver"], v["comment"]) for v in mine["votes"]] == [
        ("anna@corp.example", "ok, watch INC-4")
    ]

    second = post(
        client,
        f"/api/v1/approvals/{waiting.pk}/decision",
        {"decision": "approve"},
        bearer(world.second_approver),
    )
    assert second.json()["state"] == "approved"


def test_decisions_are_refused_as_json_by_rule(client: Client, world: World) -> None:
    waiting = pending(world)
    url = f"/api/v1/approvals/{waiting.pk}/decision"

    own = post(client, url, {"decision": "approve"}, bearer(world.requester))
    assert (own.status_code, own.json()["error"]) == (403, "self_approval")
    outsider = post(client, url, {"decision": "approve"}, bearer(world.outsider))
    assert (outsider.status_code, outsider.json()["error"]) == (404, "not_found")
    unknown = post(
        client, "/api/v1/approvals/999999/decision", {"decision": "deny"}, bearer(world.approver)
    )
    assert unknown.status_code == 404
    auth = bearer(world.approver)
    post(client, url, {"decision": "deny", "comment": "no change ticket"}, auth)
    again = post(client, url, {"decision": "approve"}, bearer(world.second_approver))
    assert (again.status_code, again.json()["error"]) == (409, "request_not_pending")
    assert AccessRequest.objects.get(pk=waiting.pk).state == "denied"


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        ({"decision": "maybe"}, "decision must be"),
        ({}, "decision must be"),
        ({"decision": "approve", "comment": 7}, "comment must be text"),
        ({"decision": "approve", "comment": "x" * 2001}, "comment must be text"),
        ({"decision": "approve", "vote": 2}, "Unknown field 'vote'"),
        (["approve"], "JSON object"),
    ],
)
def test_malformed_decisions_are_400_audited_and_change_nothing(
    client: Client, world: World, body: Any, fault: str
) -> None:
    waiting = pending(world)
    response = post(
        client, f"/api/v1/approvals/{waiting.pk}/decision", body, bearer(world.approver)
    )
    assert response.status_code == 400
    assert fault in response.json()["message"]
    assert not Approval.objects.exists()
    assert AuditEvent.objects.filter(event_type="api.request_refused").count() == 1


def test_requester_lists_and_cancels_requests_through_the_api(client: Client, world: World) -> None:
    waiting = pending(world)
    auth = bearer(world.requester)

    listed = client.get("/api/v1/requests", **auth)
    assert [r["id"] for r in listed.json()["requests"]] == [waiting.pk]
    assert client.get("/api/v1/requests", **bearer(world.approver)).json() == {"requests": []}

    hidden = post(client, f"/api/v1/requests/{waiting.pk}/cancel", {}, bearer(world.approver))
    assert hidden.status_code in (403, 404)
    cancelled = post(client, f"/api/v1/requests/{waiting.pk}/cancel", {}, auth)
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
    twice = post(client, f"/api/v1/requests/{waiting.pk}/cancel", {}, auth)
    assert (twice.status_code, twice.json()["error"]) == (409, "request_not_pending")


def test_wrong_methods_and_paths_answer_json(client: Client, world: World) -> None:
    auth = bearer(world.approver)
    for method, url, allow in (
        ("put", "/api/v1/requests", "GET, HEAD, POST"),
        ("delete", "/api/v1/approvals", "GET, HEAD"),
        ("get", "/api/v1/approvals/1/decision", "POST"),
        ("get", "/api/v1/requests/1/cancel", "POST"),
    ):
        response = getattr(client, method)(url, **auth)
        assert response.status_code == 405, url
        assert response["Allow"] == allow
        assert response.json()["error"] == "method_not_allowed"
    missing = client.get("/api/v1/approvals/1", **auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    # A POST to a path that is not there is a JSON 404 too, not the CSRF page.
    strict = Client(enforce_csrf_checks=True)
    for url in ("/api/v1/approvals/null,null/decision", "/api/v1/requests/x/cancel"):
        response = post(strict, url, {"decision": "deny"}, auth)
        assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert client.get("/api/v1/approvals").status_code == 401


def test_the_openapi_document_names_the_new_operations(client: Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {"listRequests", "cancelRequest", "listApprovals", "decideRequest"} <= operations
