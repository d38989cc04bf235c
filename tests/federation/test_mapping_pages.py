"""The admin pages name things (issue 20): titles with names not ids, durations in hours and
minutes, the current version marked, and any two versions compared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from federation.mappings import apply_document, parse_document
from federation.models import GroupMapping
from tests.factories import UserFactory
from tests.mapping_samples import PB_ADMIN, PB_CLOUD_ENG, PB_CLOUD_ENG_DEV, mapping_yaml

pytestmark = pytest.mark.django_db

V1 = mapping_yaml([PB_CLOUD_ENG, PB_ADMIN])
V2 = mapping_yaml([PB_CLOUD_ENG_DEV, PB_ADMIN.replace("240", "120")])


@pytest.fixture
def admin(client: Client) -> Iterator[Client]:
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        for text in (V1, V2):
            apply_document(parse_document(text), actor="t", source="import", now=timezone.now())
        client.force_login(UserFactory(directory_groups=["fed-admins"]))
        yield client


def test_rows_are_named_by_group_role_and_unit_never_ids(admin: Client) -> None:
    row = GroupMapping.objects.get(group="aws-pb-admin")
    assert str(row) == "aws-pb-admin → admin in pb (eligible)"
    page = admin.get(f"/mappings/mappings/{row.pk}/remove/").content.decode()
    assert "<title>Remove aws-pb-admin → admin in pb (eligible)" in page


def test_grant_limits_read_in_hours_and_minutes(admin: Client) -> None:
    body = admin.get("/mappings/").content.decode()
    assert "grants up to 2 h" in body
    assert "2:00:00" not in body


def test_the_current_version_is_marked(admin: Client) -> None:
    body = admin.get("/mappings/versions/").content.decode()
    assert '<tr class="current" aria-current="true"><td><a href="/mappings/versions/2/">v2</a>' in (
        body
    )
    assert "/mappings/versions/compare/?from=1&amp;to=2" in body
    assert "current</span></h1>" in admin.get("/mappings/versions/2/").content.decode()
    assert (
        "Compare with the current version (2)"
        in admin.get("/mappings/versions/1/").content.decode()
    )


def test_two_versions_compare_row_by_row(admin: Client) -> None:
    response = admin.get("/mappings/versions/compare/", {"from": "1", "to": "2"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "<h1>From version 1 to version 2</h1>" in body
    assert "+ only in version 2: <strong>aws-pb-cloud-eng → cloud-eng in pb (dev)" in body
    assert " only in version 1: <strong>aws-pb-cloud-eng → cloud-eng in pb</strong>" in body
    assert "max_grant_minutes: 240 → 120" in body
    same = admin.get("/mappings/versions/compare/", {"from": "2", "to": "2"}).content.decode()
    assert "The two versions hold the same tables." in same
    backwards = admin.get("/mappings/versions/compare/", {"from": "2", "to": "1"})
    assert "max_grant_minutes: 120 → 240" in backwards.content.decode()


@pytest.mark.parametrize(
    "query", [{"from": "1", "to": "9"}, {"from": "x", "to": "1"}, {"to": "1"}, {"from": "²"}]
)
def test_comparing_unknown_versions_is_a_clear_404(admin: Client, query: dict[str, str]) -> None:
    response = admin.get("/mappings/versions/compare/", query)
    assert response.status_code == 404
    assert "compare two versions by number" in response.content.decode()


def test_only_admins_compare(client: Client) -> None:
    client.force_login(UserFactory(directory_groups=["employees"]))
    assert client.get("/mappings/versions/compare/", {"from": 1, "to": 1}).status_code == 403
