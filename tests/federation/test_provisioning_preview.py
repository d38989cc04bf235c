"""A mapping draft's effect on the IAM roles, from the documents alone (no IAM call), and on the
draft's page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.mappings import apply_document, parse_document
from federation.mappings.drafts import propose_change, propose_edit
from federation.models import DraftKind, User
from federation.provisioning import trust
from federation.provisioning.preview import preview_roles
from tests.factories import UserFactory
from tests.federation.test_provisioning_plan import BROKER, MOMENT, TABLES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tables(settings: SettingsWrapper) -> None:
    settings.BROKER_PRINCIPAL_ARN = BROKER
    trust.reset_broker_principal()
    apply_document(parse_document(TABLES), actor="test", source="import", now=MOMENT)


def test_a_draft_adding_a_role_to_an_account_shows_the_role_it_creates() -> None:
    draft = (
        TABLES + "  - {group: aws-dw-ops, role: cloud-eng, business_unit: dw, access: standing}\n"
    )

    [preview] = preview_roles(parse_document(draft))

    assert preview.sentence == (
        "creates IAM role arn:aws:iam::444444444444:role/cloud-eng (cloud-eng)"
    )


def test_a_draft_removing_access_and_changing_policies_shows_both() -> None:
    draft = TABLES.replace(
        "  - {group: aws-dw-admin, role: admin, business_unit: dw, access: eligible}\n", ""
    ).replace("policy/read-only", "policy/view-only")

    sentences = [p.sentence for p in preview_roles(parse_document(draft))]

    assert sentences == [
        "changes IAM role arn:aws:iam::333333333333:role/cloud-eng (cloud-eng)",
        "deletes IAM role arn:aws:iam::444444444444:role/admin (admin)",
    ]


def test_an_unchanged_document_previews_nothing() -> None:
    assert preview_roles(parse_document(TABLES)) == []


def _admin(settings: SettingsWrapper) -> User:
    settings.ADMIN_GROUPS = ["fed-admins"]
    return UserFactory(email="root@corp.example", directory_groups=["fed-admins"])


def test_the_draft_page_shows_the_role_a_new_row_will_create(
    settings: SettingsWrapper, client: Client
) -> None:
    admin = _admin(settings)
    draft = propose_edit(
        "mappings",
        actor=admin,
        old_key=None,
        new_item={"group": "aws-dw-ops", "role": "cloud-eng", "business_unit": "dw"}
        | {"access": "standing"},
        summary="DW ops",
        reason="onboarding",
        now=timezone.now(),
    )
    client.force_login(admin)

    page = client.get(f"/mappings/drafts/{draft.pk}/").content.decode()

    assert draft.plan["iam_roles"]["roles"][0]["action"] == "create"
    assert (
        "creates IAM role arn:aws:iam::444444444444:role/cloud-eng (cloud-eng) in dw-prod" in page
    )


def test_a_draft_calling_for_a_role_iam_would_refuse_says_so_on_its_page(
    settings: SettingsWrapper, client: Client
) -> None:
    settings.ROLE_MANAGED_POLICIES_MAX = 1
    admin = _admin(settings)
    too_many = TABLES.replace(
        'dev: ["arn:aws:iam::${AccountId}:policy/power"]',
        'dev: ["arn:aws:iam::${AccountId}:policy/power", "arn:aws:iam::aws:policy/x"]',
    )
    draft = propose_change(
        parse_document(too_many),
        actor=admin,
        kind=DraftKind.UPLOAD,
        summary="more policies",
        reason="needs more",
        now=timezone.now(),
    )
    client.force_login(admin)

    page = client.get(f"/mappings/drafts/{draft.pk}/").content.decode()

    assert "roles_apply would refuse these tables" in page
    assert "role cloud-eng in account 111111111111 (pb-canary)" in page
    assert "IAM attaches at most 1" in page
