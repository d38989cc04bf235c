"""Revocation ends a grant now and denies the holder's earlier sessions in IAM (SECURITY.md §4),
against a moto server over HTTP; a failing IAM call is audited and retried, never lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from django.test import override_settings
from django.utils import timezone

from access_requests import queries, refusals, sweeps
from access_requests.models import Grant
from access_requests.services import grants, workflow
from federation.aws import iam
from federation.aws.names import session_name_for
from federation.models import AuditEvent, User
from tests.access_requests.conftest import World, approved_request, usable_access
from tests.aws import MotoServer
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def create_role(name: str = "admin") -> str:
    return str(
        boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"][
            "Arn"
        ]
    )


def policy_statements(role: str = "admin") -> list[dict[str, Any]]:
    document = boto3.client("iam").get_role_policy(RoleName=role, PolicyName=iam.POLICY_NAME)[
        "PolicyDocument"
    ]
    return list(document["Statement"])


def granted(world: World, now: datetime) -> Grant:
    request = approved_request(world, now, justification="incident", duration=timedelta(hours=2))
    return Grant.objects.get(request=request)


def test_revoked_grant_cannot_be_used_and_its_deny_policy_is_in_place(
    world: World, aws: MotoServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    create_role("admin")
    now = timezone.now().replace(microsecond=0)
    grant = granted(world, now - timedelta(minutes=10))

    with django_capture_on_commit_callbacks(execute=True):
        grants.revoke_grant(grant, actor=world.second_approver, now=now, reason="done early")

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert grant.revoked_by == world.second_approver
    assert grant.revocation_applied_at is not None
    assert usable_access(world.requester, "111111111111", at=now) == "eligible"
    (statement,) = policy_statements()
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceIdentity": world.requester.email},
        "DateLessThan": {"aws:TokenIssueTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    types = list(
        AuditEvent.objects.filter(event_type__startswith="grant.").values_list(
            "event_type", flat=True
        )
    )
    assert types == ["grant.revocation_policy_applied", "grant.revoked", "grant.granted"]


def test_revocation_statements_are_per_person_and_merge_for_the_same_person(
    aws: MotoServer,
) -> None:
    arn = create_role("admin")
    t1 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    iam.put_revocation_policy(arn, source_identity="rita@corp.example", issued_before=t1, now=t1)
    iam.put_revocation_policy(
        arn, source_identity="sam@corp.example", issued_before=t1 + timedelta(minutes=5), now=t1
    )
    iam.put_revocation_policy(
        arn, source_identity="rita@corp.example", issued_before=t1 + timedelta(hours=1), now=t1
    )

    revoked = {r.source_identity: r.issued_before for r in iam.list_revocations(arn)}
    assert revoked == {
        "rita@corp.example": t1 + timedelta(hours=1),
        "sam@corp.example": t1 + timedelta(minutes=5),
    }
    # Sub-second revocation times round up, so a session issued in that second is denied too.
    iam.put_revocation_policy(
        arn,
        source_identity="sam@corp.example",
        issued_before=t1 + timedelta(minutes=5, microseconds=1),
        now=t1,
    )
    assert {r.source_identity: r.issued_before for r in iam.list_revocations(arn)}[
        "sam@corp.example"
    ] == t1 + timedelta(minutes=5, seconds=1)


def test_expired_statements_are_collected_and_foreign_ones_kept(aws: MotoServer) -> None:
    arn = create_role("admin")
    foreign = {"Sid": "KeepMe", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}
    boto3.client("iam").put_role_policy(
        RoleName="admin",
        PolicyName=iam.POLICY_NAME,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [foreign]}),
    )
    t1 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    iam.put_revocation_policy(arn, source_identity="old@corp.example", issued_before=t1, now=t1)
    iam.put_revocation_policy(
        arn, source_identity="new@corp.example", issued_before=t1 + timedelta(hours=6), now=t1
    )

    removed = iam.collect_expired_revocations(arn, now=t1 + timedelta(hours=12, seconds=1))

    assert removed == 1
    assert [r.source_identity for r in iam.list_revocations(arn)] == ["new@corp.example"]
    assert policy_statements()[0]["Sid"] == "KeepMe"


def test_policy_is_deleted_when_nothing_is_left(aws: MotoServer) -> None:
    arn = create_role("admin")
    t1 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    iam.put_revocation_policy(arn, source_identity="old@corp.example", issued_before=t1, now=t1)
    assert iam.collect_expired_revocations(arn, now=t1 + timedelta(hours=13)) == 1
    assert iam.list_revocations(arn) == []
    assert boto3.client("iam").list_role_policies(RoleName="admin")["PolicyNames"] == []


def test_failing_iam_call_is_audited_and_retried_until_the_deny_is_in_place(
    world: World, aws: MotoServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    # The role does not exist yet in the target account: every IAM call fails.
    now = timezone.now() - timedelta(minutes=5)
    grant = granted(world, now - timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        grants.revoke_grant(grant, actor=world.approver, now=now)

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED  # the revocation itself is never lost
    assert grant.revocation_applied_at is None
    failures = AuditEvent.objects.filter(event_type="grant.revocation_policy_failed")
    assert failures.exists()
    assert "admin" in failures.first().data["error"]  # type: ignore[union-attr]
    assert queries.list_owed_revocations(now=timezone.now(), older_than=timedelta(minutes=1)) == [
        grant.pk
    ]

    create_role("admin")
    assert sweeps.retry_owed_revocations() == 1

    grant.refresh_from_db()
    assert grant.revocation_applied_at is not None
    assert [r.source_identity for r in iam.list_revocations(grant.role_arn)] == [
        world.requester.email
    ]
    assert queries.list_owed_revocations(now=timezone.now(), older_than=timedelta(0)) == []


def test_non_approver_cannot_revoke_but_an_admin_can(world: World, aws: MotoServer) -> None:
    now = timezone.now()
    grant = granted(world, now)

    # Another unit's approver: the same answer as an unknown grant (issue 12 item 9).
    with pytest.raises(refusals.GrantNotFound):
        grants.revoke_grant(grant, actor=world.outsider, now=now)
    # The holder sees their grant, so is told why.
    with pytest.raises(refusals.NotAllowedToRevoke):
        grants.revoke_grant(grant, actor=world.requester, now=now)

    admin = UserFactory(directory_groups=["aws-admins"])
    with override_settings(ADMIN_GROUPS=["aws-admins"]):
        assert grants.revoke_grant(grant, actor=admin, now=now).state == Grant.State.REVOKED
        with pytest.raises(refusals.GrantNotActive, match="already revoked"):
            grants.revoke_grant(grant, actor=admin, now=now)


def test_admin_who_lost_the_admin_group_since_cannot_revoke(world: World, aws: MotoServer) -> None:
    now = timezone.now()
    grant = granted(world, now)
    stale = UserFactory(directory_groups=["aws-admins"])  # as a long-lived object would say
    User.objects.filter(pk=stale.pk).update(directory_groups=["aws-dw-managers"])

    with (
        override_settings(ADMIN_GROUPS=["aws-admins"]),
        pytest.raises(refusals.GrantNotFound),
    ):
        grants.revoke_grant(grant, actor=stale, now=now)
    grant.refresh_from_db()
    assert grant.state == Grant.State.ACTIVE


def test_expired_grant_cannot_be_revoked(world: World) -> None:
    now = timezone.now()
    grant = granted(world, now)
    with pytest.raises(refusals.GrantNotActive, match="already expired"):
        grants.revoke_grant(grant, actor=world.approver, now=grant.ends_at)


def test_grant_of_a_holder_who_lost_eligibility_is_revoked_with_a_deny(
    world: World, aws: MotoServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    create_role("admin")
    now = timezone.now()
    grant = granted(world, now - timedelta(minutes=5))
    assert grants.revoke_lost_eligibility(now=now) == 0

    User.objects.filter(pk=world.requester.pk).update(directory_groups=["aws-pb-cloud-eng"])
    with django_capture_on_commit_callbacks(execute=True):
        assert grants.revoke_lost_eligibility(now=now) == 1

    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED and grant.revoked_by is None
    assert grant.revocation_applied_at is not None
    revoked = AuditEvent.objects.get(event_type="grant.revoked")
    assert (revoked.actor, revoked.data["reason"]) == ("system", "holder no longer eligible")
    assert grants.revoke_lost_eligibility(now=now) == 0


def iam_in_account(account_id: str, role: str = "broker-management") -> Any:
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role}", RoleSessionName="test-setup"
    )["Credentials"]
    return boto3.client(
        "iam",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def test_cross_account_revocation_assumes_the_management_role_in_the_target_account(
    aws: MotoServer, settings: Any
) -> None:
    settings.IAM_MANAGEMENT_ROLE_NAME = "broker-management"
    target = iam_in_account("333333333333")
    target.create_role(RoleName="admin", AssumeRolePolicyDocument=TRUST)
    arn = "arn:aws:iam::333333333333:role/admin"
    moment = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    iam.put_revocation_policy(
        arn, source_identity="rita@corp.example", issued_before=moment, now=moment
    )

    document = target.get_role_policy(RoleName="admin", PolicyName=iam.POLICY_NAME)
    assert document["PolicyDocument"]["Statement"][0]["Condition"]["StringEquals"] == {
        "aws:SourceIdentity": "rita@corp.example"
    }
    # The broker's own account has no such role: the write went to the target account.
    assert [r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]] == []


def test_deny_names_the_session_name_issuance_stamps_for_unusual_emails(
    world: World, aws: MotoServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    create_role("admin")
    User.objects.filter(pk=world.requester.pk).update(email="rita o'neil@corp.example")
    world.requester.refresh_from_db()
    now = timezone.now()
    grant = granted(world, now - timedelta(minutes=1))
    assert grant.source_identity == session_name_for(world.requester.email)

    with django_capture_on_commit_callbacks(execute=True):
        grants.revoke_grant(grant, actor=world.approver, now=now)

    (entry,) = iam.list_revocations(grant.role_arn)
    assert entry.source_identity == "rita=20o=27neil@corp.example"


def test_approval_is_refused_for_a_requester_without_a_usable_source_identity(
    world: World,
) -> None:
    now = timezone.now()
    request = workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="incident",
        duration=timedelta(hours=1),
        now=now,
    )
    User.objects.filter(pk=world.requester.pk).update(email="")

    with pytest.raises(refusals.RequesterNotEligible, match="SourceIdentity"):
        workflow.decide_request(request, actor=world.approver, decision="approve", now=now)
    assert not Grant.objects.exists()
