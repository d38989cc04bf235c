from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from federation.entitlements.review import ReviewScopeRefused, UnknownReviewScope, review_access
from federation.models import Access, Account, AuditEvent
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GrantFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    SessionIssuanceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, object]:
    pb, dw = BusinessUnitFactory(slug="pb"), BusinessUnitFactory(slug="dw")
    pb_prod = AccountFactory(alias="pb-prod", business_unit=pb, environment="prod")
    dw_prod = AccountFactory(alias="dw-prod", business_unit=dw, environment="prod")
    ops = LogicalRoleFactory(name="operations")
    admin = LogicalRoleFactory(name="admin", privileged=True)
    GroupMappingFactory(group="aws-pb-ops", role=ops, business_unit=pb)
    GroupMappingFactory(group="aws-pb-admin", role=admin, business_unit=pb, access=Access.ELIGIBLE)
    GroupMappingFactory(group="aws-pb-readonly", role=ops, business_unit=pb)
    GroupMappingFactory(group="aws-dw-ops", role=ops, business_unit=dw)
    alice = UserFactory(email="alice@corp.example", directory_groups=["aws-pb-ops", "aws-pb-admin"])
    bob = UserFactory(email="bob@corp.example", directory_groups=["aws-pb-admin"])
    UserFactory(email="dora@corp.example", directory_groups=["aws-dw-ops"])
    now = timezone.now()
    grant = GrantFactory(
        request__requester=bob,
        request__account=pb_prod,
        request__role=admin,
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(hours=1),
    )
    SessionIssuanceFactory(user=alice, account=pb_prod, role=ops, issued_at=now - timedelta(days=2))
    SessionIssuanceFactory(
        user=alice, account=pb_prod, role=ops, issued_at=now - timedelta(hours=3)
    )
    SessionIssuanceFactory(user=alice, account=dw_prod, role=ops, issued_at=now)
    return {"pb_prod": pb_prod, "grant": grant, "now": now}


def test_review_says_who_reaches_what_why_and_when_last_used(world: dict[str, object]) -> None:
    pb_prod = world["pb_prod"]
    assert isinstance(pb_prod, Account)
    now = world["now"]
    rows = review_access(account_id=pb_prod.account_id, now=now)  # type: ignore[arg-type]
    seen = {(r.subject, r.role, r.access): r for r in rows}

    alice_ops = seen[("alice@corp.example", "operations", "standing")]
    assert alice_ops.why == "standing via aws-pb-ops"
    assert alice_ops.last_used == now - timedelta(hours=3)  # type: ignore[operator]
    assert seen[("alice@corp.example", "admin", "eligible")].privileged
    bob_admin = seen[("bob@corp.example", "admin", "grant")]
    assert bob_admin.why.startswith(f"active grant #{world['grant'].pk} until")  # type: ignore[attr-defined]
    assert bob_admin.last_used is None
    assert ("group aws-pb-readonly", "operations", "standing") in seen
    assert not any("dora" in r.subject or r.account_alias == "dw-prod" for r in rows)


def test_review_of_a_business_unit_and_bad_scopes(world: dict[str, object]) -> None:
    rows = review_access(business_unit="dw", now=timezone.now())
    assert {r.subject for r in rows} == {"dora@corp.example"}
    with pytest.raises(UnknownReviewScope, match="Unknown business unit") as unknown:
        review_access(business_unit="nope", now=timezone.now())
    assert (unknown.value.code, unknown.value.status) == ("unknown_review_scope", 400)
    with pytest.raises(ReviewScopeRefused, match="one account or one business unit") as both:
        review_access(account_id="1", business_unit="dw", now=timezone.now())
    assert both.value.code == "invalid_review_scope"
    with pytest.raises(ReviewScopeRefused, match="one account or one business unit"):
        review_access(now=timezone.now())


@override_settings(AUDITOR_GROUPS=["auditors"])
def test_review_page_and_csv_export_for_auditors_only(
    client: Client, world: dict[str, object]
) -> None:
    pb_prod = world["pb_prod"]
    assert isinstance(pb_prod, Account)
    client.force_login(UserFactory(directory_groups=["aws-pb-ops"]))
    assert client.get("/review/", {"account": pb_prod.account_id}).status_code == 403

    client.force_login(UserFactory(directory_groups=["auditors"], email="aud@corp.example"))
    page = client.get("/review/", {"account": pb_prod.account_id}).content.decode()
    assert "alice@corp.example" in page and "standing via aws-pb-ops" in page
    response = client.get("/review/", {"account": pb_prod.account_id, "format": "csv"})
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {"subject": "bob@corp.example", "access": "grant"}.items() <= next(
        r for r in table if r["subject"] == "bob@corp.example"
    ).items()
    assert AuditEvent.objects.filter(event_type="review.export").count() == 1
    unknown = client.get("/review/", {"account": "999999999999"})
    assert unknown.status_code == 400
    assert "Unknown account." in unknown.content.decode()
    assert "unknown_review_scope" in unknown.content.decode()
    # Nothing was audited for a mistyped scope, so the page must not claim it was.
    assert "has been recorded" not in unknown.content.decode()
    unknown_export = client.get("/review/", {"account": "999999999999", "format": "csv"})
    assert unknown_export.status_code == 400
    # A refused export took nothing away, so nothing more is audited.
    assert AuditEvent.objects.filter(event_type="review.export").count() == 1


@override_settings(AUDITOR_GROUPS=["auditors"])
def test_csv_cells_cannot_become_spreadsheet_formulas(client: Client) -> None:
    unit = BusinessUnitFactory(slug="pb")
    account = AccountFactory(business_unit=unit)
    GroupMappingFactory(group="g", role=LogicalRoleFactory(name="ops"), business_unit=unit)
    UserFactory(email="=HYPERLINK(1)@corp.example", directory_groups=["g"])
    client.force_login(UserFactory(directory_groups=["auditors"]))
    body = client.get("/review/", {"account": account.account_id, "format": "csv"})
    [row] = list(csv.DictReader(io.StringIO(body.content.decode())))
    assert row["subject"] == "'=HYPERLINK(1)@corp.example"


def test_people_outside_the_scope_are_not_resolved_one_by_one(
    world: dict[str, object], django_assert_max_num_queries: Any
) -> None:
    pb_prod = world["pb_prod"]
    assert isinstance(pb_prod, Account)
    now = timezone.now()
    with CaptureQueriesContext(connection) as before:
        review_access(account_id=pb_prod.account_id, now=now)
    for i in range(20):
        UserFactory(email=f"dw{i}@corp.example", directory_groups=["aws-dw-ops"])
    with django_assert_max_num_queries(len(before.captured_queries)):
        rows = review_access(account_id=pb_prod.account_id, now=now)
    assert not any(r.subject.startswith("dw") for r in rows)
