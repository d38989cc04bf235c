"""A mapping draft's effect on the IAM roles, from the documents alone (no IAM call)."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.mappings import apply_document, parse_document
from federation.provisioning import trust
from federation.provisioning.preview import preview_roles
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
