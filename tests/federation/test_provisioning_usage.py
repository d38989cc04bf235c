"""Closing the loop (issue #13 §5): IAM's RoleLastUsed, read by the drift check, and our own
issuance records say which mapping rows nobody used; /review/ lists them and drafts one away
through the normal draft. Roles are used for real: credentials from AssumeRole into the
provisioned role, used against moto over HTTP."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.entitlements.usage import list_unused_mappings
from federation.models import (
    Account,
    GroupMapping,
    LogicalRole,
    MappingDraft,
    MappingVersion,
    RoleLastUsed,
)
from federation.provisioning.drift import check_drift
from tests.factories import SessionIssuanceFactory, UserFactory
from tests.federation.test_provisioning_plan import DEV, DW_PROD, PROD, World, run, world

__all__ = ["world"]


def use_role(world: World, account_id: str, role: str) -> None:
    """Act as a session of the role, so IAM records the role as used."""
    creds = boto3.client("sts", endpoint_url=world.aws.url, region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role}", RoleSessionName="someone"
    )["Credentials"]
    boto3.client(
        "sts",
        endpoint_url=world.aws.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    ).get_caller_identity()


@pytest.fixture
def used(world: World, settings: SettingsWrapper) -> World:
    """The tables for 200 days; the roles provisioned; cloud-eng used in prod (IAM), DW's
    admin used through the broker by a member of its group; pb's admin used by nobody."""
    settings.ADMIN_GROUPS, settings.AUDITOR_GROUPS = ["fed-admins"], ["fed-auditors"]
    MappingVersion.objects.update(created_at=timezone.now() - timedelta(days=200))
    assert run("roles_apply", "--yes")[0] == 0
    use_role(world, PROD, "cloud-eng")
    check_drift(now=timezone.now())
    admin = LogicalRole.objects.get(name="admin")
    SessionIssuanceFactory(
        user=UserFactory(directory_groups=["aws-dw-admin"]),
        account=Account.objects.get(account_id=DW_PROD),
        role=admin,
        issued_at=timezone.now() - timedelta(days=3),
    )
    # Someone outside aws-pb-admin (a former member) used pb's prod admin: not the row's use.
    SessionIssuanceFactory(
        user=UserFactory(directory_groups=["employees"]),
        account=Account.objects.get(account_id=PROD),
        role=admin,
        issued_at=timezone.now() - timedelta(days=3),
    )
    return world


def _unused() -> list[str]:
    return [u.summary for u in list_unused_mappings(now=timezone.now())]


def test_the_drift_check_keeps_iams_last_use_of_each_role(used: World) -> None:
    [row] = RoleLastUsed.objects.all()
    assert (row.account_id, row.role, row.role_name) == (PROD, "cloud-eng", "cloud-eng")
    assert timezone.now() - row.last_used < timedelta(minutes=5)


def test_only_the_row_nobody_used_is_listed(used: World) -> None:
    assert _unused() == ["aws-pb-admin → admin (never used)"]


def test_a_use_older_than_the_window_does_not_count(used: World) -> None:
    RoleLastUsed.objects.update(last_used=timezone.now() - timedelta(days=91))

    last = f"{timezone.now() - timedelta(days=91):%Y-%m-%d}"
    assert _unused() == [
        "aws-pb-admin → admin (never used)",
        f"aws-pb-cloud-eng → cloud-eng (last used {last})",
    ]


def test_rows_younger_than_the_window_are_never_listed(world: World) -> None:
    assert _unused() == []


def test_review_page_lists_unused_rows_and_drafts_one_away(used: World) -> None:
    admin = UserFactory(directory_groups=["fed-admins"])
    auditor = Client()
    auditor.force_login(UserFactory(directory_groups=["fed-auditors"]))
    page = auditor.get("/review/").content.decode()
    assert "Unused for 90 days" in page and "aws-pb-admin" in page
    assert "Draft removal" not in page
    client = Client()
    client.force_login(admin)
    assert "Draft removal" in client.get("/review/").content.decode()
    row = list_unused_mappings(now=timezone.now())[0].mapping

    response = client.post(f"/review/unused/{row.pk}/draft/")

    draft = MappingDraft.objects.get()
    assert response["Location"] == f"/mappings/drafts/{draft.pk}/"
    assert draft.state == "open" and draft.created_by == admin
    assert draft.reason == "Access review: nobody used it for 90 days (never used)."
    assert sorted(m["group"] for m in draft.document["mappings"]) == [
        "aws-dw-admin",
        "aws-pb-cloud-eng",
    ]
    assert [r["sentence"] for r in draft.plan["iam_roles"]["roles"]] == [
        "deletes IAM role arn:aws:iam::333333333333:role/admin (admin)"
    ]
    # The normal draft: removing prod admin access is sensitive, so a second admin applies it.
    assert draft.needs_approval


def test_drafting_away_a_used_or_unknown_row_is_refused(used: World) -> None:
    client = Client()
    client.force_login(UserFactory(directory_groups=["fed-admins"]))
    cloud_eng = GroupMapping.objects.get(group="aws-pb-cloud-eng")

    page = client.post(f"/review/unused/{cloud_eng.pk}/draft/", follow=True).content.decode()

    assert "was used in the last 90 days" in page
    assert client.post("/review/unused/999999/draft/").status_code == 404
    assert client.get(f"/review/unused/{cloud_eng.pk}/draft/").status_code == 405
    auditor = Client()
    auditor.force_login(UserFactory(directory_groups=["fed-auditors"]))
    unused = list_unused_mappings(now=timezone.now())[0].mapping
    assert auditor.post(f"/review/unused/{unused.pk}/draft/").status_code == 403
    assert not MappingDraft.objects.exists()


def test_dev_roles_unused_show_as_their_accounts(used: World) -> None:
    RoleLastUsed.objects.update(last_used=timezone.now() - timedelta(days=91))
    [cloud_eng] = [
        u for u in list_unused_mappings(now=timezone.now()) if u.mapping.group == "aws-pb-cloud-eng"
    ]
    assert DEV in [a.account_id for a in cloud_eng.accounts]
    assert cloud_eng.last_used is not None
