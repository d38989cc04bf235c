"""A leaver loses everything in one SCIM request, and a mover what their groups no longer reach
(SPEC §4 Directory sync and leavers), with moto's IAM over HTTP as the ground truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from access_requests.models import AccessRequest, Grant
from federation.aws import iam
from federation.issuance.service import IssuanceRefused, issue_session
from federation.issuance.tokens import TokenRefused, authenticate_api_token, create_api_token
from federation.models import (
    AuditEvent,
    IdentityDeny,
    Leaver,
    PortalSession,
    ScimRequest,
    SessionIssuance,
    User,
)
from tests.aws import MotoServer
from tests.directory.conftest import GROUP_SCHEMA, Scim, okta_user, patch, scim_for
from tests.factories import AccessRequestFactory, GrantFactory
from tests.issuance import World

pytestmark = pytest.mark.django_db

TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})
Capture = Callable[..., Any]


def create_role(name: str) -> None:
    boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)


def denies_on(role: str) -> list[dict[str, Any]]:
    try:
        document = boto3.client("iam").get_role_policy(RoleName=role, PolicyName=iam.POLICY_NAME)
    except boto3.client("iam").exceptions.NoSuchEntityException:
        return []
    return list(document["PolicyDocument"]["Statement"])


def provisioned(world: World) -> tuple[Scim, str]:
    """Alice's identity provisioned over SCIM (her sign-in subject is her userName), in the
    groups she signed in with."""
    User.objects.filter(pk=world.alice.pk).update(subject="alice@corp.example")
    scim = scim_for(world.idp)
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    for group in ("aws-pb-cloud-eng", "aws-pb-admin"):
        created = scim.post(
            "Groups",
            {"schemas": [GROUP_SCHEMA], "displayName": group, "members": [{"value": alice["id"]}]},
        )
        assert created.status_code == 201, created.body
    world.alice.refresh_from_db()
    return scim, alice["id"]


def signed_in_portal(user: User) -> Client:
    client = Client()
    client.force_login(user)
    PortalSession.objects.create(
        user=user, session_key=client.session.session_key, created_at=timezone.now()
    )
    assert client.get("/").status_code == 200
    return client


def test_deactivation_ends_portal_api_requests_grants_and_issued_sessions(
    world: World, broker: MotoServer, django_capture_on_commit_callbacks: Capture
) -> None:
    create_role("cloud-eng")
    create_role("admin")
    scim, alice_id = provisioned(world)
    now = timezone.now()
    issued = issue_session(
        world.alice,
        account_id="111111111111",
        role="cloud-eng",
        kind="cli",
        requested=None,
        now=now - timedelta(minutes=5),
        ip=None,
    )
    token = create_api_token(
        world.alice, name="laptop", lifetime=timedelta(days=7), now=now, ip=None
    ).plaintext
    portal = signed_in_portal(world.alice)
    pending = AccessRequestFactory(
        requester=world.alice, account=world.pb_prod, role=world.admin, created_at=now
    )
    grant = GrantFactory(
        user=world.alice,
        request__requester=world.alice,
        request__account=world.pb_prod,
        request__role=world.admin,
        role_arn="arn:aws:iam::222222222222:role/admin",
        source_identity="alice@corp.example",
        starts_at=now - timedelta(minutes=30),
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(
            f"Users/{alice_id}", patch({"op": "replace", "value": {"active": False}})
        )

    assert response.status_code == 200, response.body
    assert response.body["active"] is False
    # Portal: the session row is gone and the cookie leads back to sign-in.
    assert not Session.objects.exists()
    assert portal.get("/").status_code == 302
    # API: the token is refused.
    with pytest.raises(TokenRefused):
        authenticate_api_token(token, now=timezone.now())
    # Requests and grants.
    pending.refresh_from_db()
    assert pending.state == AccessRequest.State.CANCELLED
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert grant.revocation_applied_at is not None
    # IAM: the session already issued is denied on its role, in moto.
    session = SessionIssuance.objects.get()
    assert session.pk == issued.issuance_id
    (statement,) = denies_on("cloud-eng")
    assert statement["Effect"] == "Deny"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceIdentity": session.source_identity}
    assert denies_on("admin")  # the grant's own deny
    assert IdentityDeny.objects.get().applied_at is not None
    # And nothing new is issued.
    with pytest.raises(IssuanceRefused):
        issue_session(
            world.alice,
            account_id="111111111111",
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
    # Every step names the SCIM request that caused it.
    request_id = ScimRequest.objects.filter(method="PATCH").get().pk
    leaver = Leaver.objects.get()
    assert leaver.scim_request_id == request_id
    assert (leaver.sessions_ended, leaver.tokens_revoked) == (1, 1)
    assert (leaver.requests_cancelled, leaver.grants_revoked) == (1, 1)
    recorded = {
        e.event_type: e.data
        for e in AuditEvent.objects.filter(
            event_type__in=[
                "directory.deactivated",
                "directory.sessions_ended",
                "api_token.revoked",
                "directory.deny_applied",
            ]
        )
    }
    assert set(recorded) == {
        "directory.deactivated",
        "directory.sessions_ended",
        "api_token.revoked",
        "directory.deny_applied",
    }
    assert all(data["scim_request"] == request_id for data in recorded.values())
    (revoked,) = AuditEvent.objects.filter(event_type="grant.revoked")
    assert f"SCIM request #{request_id}" in revoked.data["reason"]


def test_delete_is_a_leaver_too(
    world: World, broker: MotoServer, django_capture_on_commit_callbacks: Capture
) -> None:
    create_role("cloud-eng")
    scim, alice_id = provisioned(world)
    issue_session(
        world.alice,
        account_id="111111111111",
        role="cloud-eng",
        kind="cli",
        requested=None,
        now=timezone.now(),
        ip=None,
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert scim.delete(f"Users/{alice_id}").status_code == 204

    world.alice.refresh_from_db()
    assert not world.alice.is_active
    assert world.alice.directory_groups == []
    assert scim.get(f"Users/{alice_id}").status_code == 404
    assert Leaver.objects.get().kind == "deleted"
    assert len(denies_on("cloud-eng")) == 1


def test_iam_failure_leaves_the_deny_owed_and_the_rest_done(
    world: World, broker: MotoServer, django_capture_on_commit_callbacks: Capture
) -> None:
    # No role in IAM: the deny cannot be put; everything else still happened.
    scim, alice_id = provisioned(world)
    issue_session(
        world.alice,
        account_id="111111111111",
        role="cloud-eng",
        kind="cli",
        requested=None,
        now=timezone.now(),
        ip=None,
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(
            f"Users/{alice_id}", patch({"op": "replace", "path": "active", "value": False})
        )

    assert response.status_code == 200
    deny = IdentityDeny.objects.get()
    assert deny.applied_at is None
    assert AuditEvent.objects.filter(event_type="directory.deny_failed").exists()
    create_role("cloud-eng")  # IAM answers again: the retry puts it
    from access_requests import tasks

    tasks.apply_identity_deny(deny.pk)
    deny.refresh_from_db()
    assert deny.applied_at is not None
    assert len(denies_on("cloud-eng")) == 1


def test_group_removal_refuses_the_lost_role_and_denies_its_sessions(
    world: World, broker: MotoServer, django_capture_on_commit_callbacks: Capture
) -> None:
    create_role("cloud-eng")
    scim, alice_id = provisioned(world)
    issue_session(
        world.alice,
        account_id="111111111111",
        role="cloud-eng",
        kind="cli",
        requested=None,
        now=timezone.now(),
        ip=None,
    )
    group_id = scim.get('Groups?filter=displayName eq "aws-pb-cloud-eng"').body["Resources"][0][
        "id"
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(
            f"Groups/{group_id}",
            patch({"op": "remove", "path": f'members[value eq "{alice_id}"]'}),
        )

    assert response.status_code == 200, response.body
    world.alice.refresh_from_db()
    assert world.alice.directory_groups == ["aws-pb-admin"]
    assert world.alice.groups_source == "scim"
    with pytest.raises(IssuanceRefused) as refused:
        issue_session(
            world.alice,
            account_id="111111111111",
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
    assert refused.value.code == "not_entitled"
    mover = Leaver.objects.get()
    assert mover.kind == "moved"
    assert mover.lost == ["111111111111/cloud-eng", "222222222222/cloud-eng"]
    assert len(denies_on("cloud-eng")) == 1
    assert world.alice.is_active


def test_issuance_rechecks_groups_changed_after_the_request_was_authenticated(
    world: World, broker: MotoServer
) -> None:
    scim, alice_id = provisioned(world)
    stale = User.objects.get(pk=world.alice.pk)  # loaded before the change, like request.user
    group_id = scim.get('Groups?filter=displayName eq "aws-pb-cloud-eng"').body["Resources"][0][
        "id"
    ]
    scim.patch(
        f"Groups/{group_id}", patch({"op": "remove", "path": f'members[value eq "{alice_id}"]'})
    )

    assert "aws-pb-cloud-eng" in stale.directory_groups
    with pytest.raises(IssuanceRefused):
        issue_session(
            stale,
            account_id="111111111111",
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
