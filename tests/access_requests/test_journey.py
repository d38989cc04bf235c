"""End to end with issuance (issue #6 "Done means"): a requester, two prod approvers, a session
issued under the grant and tagged with the request, then a revocation that refuses the next
issuance and denies the earlier session's SourceIdentity in IAM. STS and IAM on moto over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from django.utils import timezone

from access_requests.models import AccessRequest, Grant
from access_requests.services import grants, workflow
from federation.aws import iam, sts
from federation.issuance.service import TAG_ACCESS_REQUEST, GrantRequired, issue_session
from federation.models import AuditEvent, SessionIssuance
from tests.access_requests.conftest import World
from tests.aws import MotoServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(aws: MotoServer, settings: Any) -> Iterator[MotoServer]:
    settings.STS_REGIONS = ["us-east-1"]
    settings.STS_ENDPOINTS = []
    settings.STS_BROKER_CHAINED = "false"
    sts.reset_clients()
    boto3.client("iam").create_role(
        RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    yield aws
    sts.reset_clients()


def test_request_two_approvals_issue_then_revoke(
    world: World,
    broker: MotoServer,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    now = timezone.now()
    request = workflow.submit_request(
        world.requester,
        account_id="222222222222",
        role="admin",
        justification="CHG-9 prod schema migration",
        duration=timedelta(hours=2),
        now=now,
    )
    with pytest.raises(GrantRequired):
        issue_session(
            world.requester, account_id="222222222222", role="admin", kind="cli",
            requested=None, now=now, ip=None,
        )  # fmt: skip
    workflow.decide_request(request, actor=world.approver, decision="approve", now=now)
    workflow.decide_request(request, actor=world.second_approver, decision="approve", now=now)
    request.refresh_from_db()
    assert request.state == AccessRequest.State.APPROVED
    grant = Grant.objects.get(request=request)

    issued = issue_session(
        world.requester, account_id="222222222222", role="admin", kind="cli",
        requested=None, now=now + timedelta(minutes=1), ip=None,
    )  # fmt: skip

    record = SessionIssuance.objects.get(pk=issued.issuance_id)
    assert record.grant_id == grant.pk
    assert record.source_identity == grant.source_identity
    assert issued.expires_at <= grant.ends_at
    issued_event = AuditEvent.objects.filter(event_type__startswith="issuance.").latest("seq")
    assert issued_event.data["tags"][TAG_ACCESS_REQUEST] == str(request.pk)

    revoked_at = now + timedelta(minutes=2)
    with django_capture_on_commit_callbacks(execute=True):
        grants.revoke_grant(grant, actor=world.approver, now=revoked_at, reason="done")

    with pytest.raises(GrantRequired):
        issue_session(
            world.requester, account_id="222222222222", role="admin", kind="cli",
            requested=None, now=revoked_at + timedelta(seconds=1), ip=None,
        )  # fmt: skip
    (deny,) = iam.list_revocations(grant.role_arn)
    assert deny.source_identity == record.source_identity
    assert deny.issued_before > record.issued_at  # the session issued before is denied
