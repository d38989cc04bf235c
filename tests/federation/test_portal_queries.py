"""The portal page of a signed-in person in a bounded number of SQL statements (issue 19): the
same count for 2 accounts as for 30, and one entitlement resolution shared by the page and its
navigation. Counted, never timed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from federation.models import Access, User
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# The session row, the user, the mapping version with the person's grants and the approver scope
# (accounts and mapping rows in one statement; the unit names are memoised for a few seconds);
# for an approver also the requests waiting for them and the break-glass activations to review.
# (A person eligible for nothing adds whether they filed requests of their own.)
PERSON_QUERIES = 4
APPROVER_QUERIES = 6


def person(accounts: int, *, approver: bool = True) -> User:
    pb = BusinessUnitFactory(slug="pb", name="Personal Banking")
    for n in range(accounts):
        AccountFactory(alias=f"pb-dev-{n:02d}", business_unit=pb, environment="dev")
    AccountFactory(alias="pb-prod", business_unit=pb, environment="prod")
    GroupMappingFactory(group="aws-pb-cloud-eng", role=LogicalRoleFactory(), business_unit=pb)
    GroupMappingFactory(
        group="aws-pb-admin",
        role=LogicalRoleFactory(name="admin"),
        business_unit=pb,
        environments=["prod"],
        access=Access.ELIGIBLE,
    )
    groups = ["aws-pb-cloud-eng", "aws-pb-admin"] + (["aws-pb-managers"] if approver else [])
    return UserFactory(directory_groups=groups)


def portal(client: Client) -> tuple[str, list[str]]:
    client.get("/")  # the catalog and resolution memos warm, as on a running server
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("accounts", [2, 30])
@pytest.mark.parametrize("approver", [False, True], ids=["person", "approver"])
def test_the_portal_page_takes_a_fixed_number_of_queries(
    client: Client, accounts: int, approver: bool
) -> None:
    client.force_login(person(accounts, approver=approver))

    body, queries = portal(client)

    assert len(queries) <= (APPROVER_QUERIES if approver else PERSON_QUERIES), "\n".join(queries)
    assert f"pb-dev-{accounts - 1:02d}" in body and "pb-prod" in body
    # The navigation still says what this person may do: request (eligible), and approve.
    assert '<a href="/requests/">Requests</a>' in body
    assert ('<a href="/approvals/">Approvals' in body) is approver


def test_the_page_and_its_navigation_resolve_the_entitlements_once(client: Client) -> None:
    client.force_login(person(3))

    _, queries = portal(client)

    assert sum('"federation_mappingversion"' in q for q in queries) == 1, "\n".join(queries)


def test_each_request_resolves_afresh(client: Client) -> None:
    # The shared answer lives on one request only: a group taken away shows on the next page,
    # in the page and in its navigation.
    user = person(1)
    client.force_login(user)
    before, _ = portal(client)
    assert "eligible" in before and '<a href="/requests/">Requests</a>' in before

    user.directory_groups = ["aws-pb-cloud-eng"]
    user.save(update_fields=["directory_groups"])

    after, _ = portal(client)
    assert "pb-dev-00" in after
    assert "eligible" not in after and '<a href="/requests/">Requests</a>' not in after
