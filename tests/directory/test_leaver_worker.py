"""The leaver's IAM part on real parts: a Celery worker subprocess on Redis puts the deny, in
moto's IAM over HTTP, after the SCIM request has committed and answered."""

from __future__ import annotations

import json

import boto3
import pytest

from federation.aws import iam
from federation.models import AuditEvent, IdentityDeny, User
from tests.access_requests.live import (  # noqa: F401 - fixtures
    celery_worker,
    mail_sink,
    wait_for,
    webhook_sink,
)
from tests.aws import MotoServer
from tests.directory.conftest import okta_user, patch, scim_for
from tests.factories import (
    AccountFactory,
    IdentityProviderFactory,
    LogicalRoleFactory,
    SessionIssuanceFactory,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_the_worker_denies_a_leavers_issued_sessions(aws: MotoServer) -> None:
    boto3.client("iam").create_role(
        RoleName="cloud-eng", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    scim = scim_for(IdentityProviderFactory(slug="okta"))
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    user = User.objects.get(subject="alice@corp.example")
    issued = SessionIssuanceFactory(
        user=user,
        account=AccountFactory(account_id="111111111111"),
        role=LogicalRoleFactory(name="cloud-eng"),
    )

    response = scim.patch(
        f"Users/{alice['id']}", patch({"op": "replace", "path": "active", "value": False})
    )

    assert response.status_code == 200
    wait_for(
        lambda: IdentityDeny.objects.filter(applied_at__isnull=False).exists(),
        what="the worker to put the deny",
    )
    (entry,) = iam.list_revocations(issued.role_arn)
    assert entry.source_identity == issued.source_identity
    applied = AuditEvent.objects.get(event_type="directory.deny_applied")
    assert applied.data["scim_request"] == IdentityDeny.objects.get().leaver.scim_request_id
