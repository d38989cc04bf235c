"""Whom the portal counts as an approver, and for what (the navigation and the approvals lists):
a member of an approver group of a business unit, of an account or of a mapping row. On
PostgreSQL the candidates are narrowed in the database (issue 19); the same rule decides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access_requests.queries import _approver_scope
from federation.models import Access
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog() -> dict[str, int]:
    pb = BusinessUnitFactory(slug="pb", approver_groups=["aws-pb-managers"])
    dw = BusinessUnitFactory(slug="dw", approver_groups=["aws-dw-managers"])
    pb_dev = AccountFactory(alias="pb-dev", business_unit=pb)
    dw_dev = AccountFactory(alias="dw-dev", business_unit=dw, approver_groups=["dw-dev-owners"])
    row = GroupMappingFactory(
        group="aws-dw-admin",
        role=LogicalRoleFactory(name="admin"),
        business_unit=dw,
        access=Access.ELIGIBLE,
        max_grant=timedelta(hours=4),
        approver_groups=["dw-admin-approvers", "other"],
    )
    GroupMappingFactory(group="aws-pb-eng", business_unit=pb)  # standing: no approvers
    return {"pb-dev": pb_dev.pk, "dw-dev": dw_dev.pk, "row": row.pk}


@pytest.mark.parametrize(
    ("groups", "accounts", "rows"),
    [
        (["aws-pb-managers"], ["pb-dev"], []),  # the unit's approvers
        (["dw-dev-owners", "aws-pb-eng"], ["dw-dev"], []),  # the account's own
        (["dw-admin-approvers"], [], ["row"]),  # the mapping row's
        (["aws-pb-managers", "aws-dw-managers", "other"], ["pb-dev", "dw-dev"], ["row"]),
        ([], [], []),
        (["aws-pb-eng"], [], []),  # a member, not an approver
        # Look-alikes are not the group: case, spaces, a prefix, JSON and SQL syntax.
        (["AWS-PB-MANAGERS", "aws-pb-managers ", "aws-pb-manager", "aws-pb"], [], []),
        (['["aws-pb-managers"]', "aws-pb-managers' OR '1'='1", "%", "*"], [], []),
    ],
)
def test_approver_scope_is_the_groups_named_by_unit_account_or_row(
    catalog: dict[str, int], groups: list[str], accounts: list[str], rows: list[str]
) -> None:
    found_accounts, found_rows = _approver_scope(UserFactory(directory_groups=groups))

    assert sorted(found_accounts) == sorted(catalog[a] for a in accounts)
    assert found_rows == [catalog[r] for r in rows]


def test_on_postgresql_only_the_candidates_are_read(catalog: dict[str, int]) -> None:
    with CaptureQueriesContext(connection) as queries:
        _approver_scope(UserFactory.build(directory_groups=["aws-pb-managers"]))

    # One statement for the accounts and the mapping rows (issue 19), each narrowed by ?|.
    assert len(queries.captured_queries) == 1
    assert queries.captured_queries[0]["sql"].count("?|") == 3
