"""The portal renders each distinct row once per process (issue 19) and hands every person their
own CSRF token in it: a row memoised for one person carries the next person's token, never the
first's, and nothing of the memo's marker reaches a page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.middleware.csrf import _unmask_cipher_token
from django.test import Client
from django.utils import timezone

from federation.entitlements import views
from federation.models import Access
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]+)"')


def _tokens(client: Client) -> tuple[str, set[str]]:
    body = client.get("/").content.decode()
    secret = client.cookies["csrftoken"].value
    return body, {_unmask_cipher_token(token) for token in TOKEN.findall(body)} | {secret}


def test_a_shared_row_carries_each_persons_own_csrf_token() -> None:
    pb = BusinessUnitFactory(slug="pb")
    AccountFactory(alias="pb-dev", business_unit=pb)
    GroupMappingFactory(group="aws-pb-cloud-eng", role=LogicalRoleFactory(), business_unit=pb)
    seen = []
    for _ in range(2):
        client = Client()
        client.force_login(UserFactory(directory_groups=["aws-pb-cloud-eng"]))
        body, owners = _tokens(client)
        assert "pb-dev" in body and 'action="/sessions/"' in body
        assert len(owners) == 1, "every token on the page is this person's"
        assert views._CSRF_MARKER not in body
        seen.append(owners.pop())
    assert seen[0] != seen[1]
    assert views._row_memo, "the row was memoised"


def test_a_granted_row_follows_the_clock(client: Client) -> None:
    pb = BusinessUnitFactory(slug="pb")
    AccountFactory(alias="pb-prod", business_unit=pb, environment="prod")
    GroupMappingFactory(
        group="aws-pb-admin",
        role=LogicalRoleFactory(name="admin"),
        business_unit=pb,
        access=Access.ELIGIBLE,
    )
    client.force_login(UserFactory(directory_groups=["aws-pb-admin"]))
    from federation.entitlements.resolve import resolve_entitlements

    (eligible,) = resolve_entitlements(["aws-pb-admin"], now=timezone.now())
    now = timezone.now()
    granted = eligible._replace(access="grant", grant_id=1, grant_ends_at=now + timedelta(hours=2))
    first = views._rows_html([granted], now, "t")
    later = views._rows_html([granted], now + timedelta(minutes=90), "t")
    assert "2\xa0hours" in first and "30\xa0minutes" in later
    assert granted not in views._row_memo
