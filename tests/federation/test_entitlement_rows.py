"""The expanded entitlement rows: every writer of mappings or accounts keeps them exact.

A resolution reads ``EntitlementRow`` (each mapping row expanded to the accounts it reaches),
which the database keeps in step by triggers. Each test changes the tables through one writer
(file import, the import command, rollback, an editor draft, the demo seed, a direct ORM write)
and checks, right after, both the rows against the Python scope rule
(``federation.entitlements.scope.accounts_reached``) and what a resolution answers.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from federation.entitlements.resolve import clear_cache, find_entitlement, resolve_entitlements
from federation.entitlements.scope import accounts_reached
from federation.mappings import apply_document, parse_document, rollback_to_version
from federation.mappings.drafts import apply_draft, propose_change
from federation.mappings.plan import plan_change
from federation.models import (
    Access,
    Account,
    DraftKind,
    EntitlementAccess,
    EntitlementRow,
    GroupMapping,
    MappingVersion,
)
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)
from tests.mapping_samples import (
    ACCOUNTS,
    DW_CLOUD_ENG,
    PB_ADMIN,
    PB_CLOUD_ENG,
    PB_CLOUD_ENG_DEV,
    mapping_yaml,
)

pytestmark = pytest.mark.django_db

PB_TEST = '{id: "444444444444", alias: pb-test, business_unit: pb, environment: test}'
PB_DEV_2 = '{id: "555555555555", alias: pb-dev-2, business_unit: pb, environment: dev}'


def apply_text(text: str, **kwargs: Any) -> Any:
    kwargs.setdefault("actor", "tester")
    kwargs.setdefault("source", "import")
    kwargs.setdefault("now", timezone.now())
    return apply_document(parse_document(text), **kwargs)


def expected_rows() -> set[tuple[int, str, int, int, str, timedelta | None]]:
    """What the rows must be, worked out in Python from the tables by the scope rule."""
    accounts = list(Account.objects.select_related("business_unit"))

    class Placed:
        def __init__(self, account: Account) -> None:
            self.account = account
            self.business_unit = account.business_unit.slug
            self.environment = account.environment

    placed = [Placed(a) for a in accounts]
    by_id = {p.account.account_id: p for p in placed}
    by_unit: dict[str, list[Placed]] = {}
    for p in placed:
        by_unit.setdefault(p.business_unit, []).append(p)
    expected = set()
    for row in GroupMapping.objects.select_related("business_unit"):
        for p in accounts_reached(
            row.business_unit.slug,
            row.environments,
            row.accounts,
            accounts_by_id=by_id,
            accounts_of_unit=by_unit,
        ):
            expected.add((row.pk, row.group, p.account.pk, row.role_id, row.access, row.max_grant))
    return expected


def stored_rows() -> set[tuple[int, str, int, int, str, timedelta | None]]:
    rows = EntitlementRow.objects.values_list(
        "mapping_id", "group", "account_id", "role_id", "access", "max_grant"
    )
    listed = list(rows)
    assert len(listed) == len(set(listed)), "an expansion was written twice"
    return set(listed)


def assert_rows_exact() -> None:
    assert stored_rows() == expected_rows()


def reach(groups: list[str]) -> set[tuple[str, str, str]]:
    """(account id, role, access) a holder of ``groups`` resolves to, read fresh."""
    return {
        (e.account_id, e.role, e.access) for e in resolve_entitlements(groups, now=timezone.now())
    }


# --- Writers through the mapping apply path ---------------------------------------------------


def test_file_import_expands_rows_and_resolution_sees_them_at_once() -> None:
    apply_text(mapping_yaml([PB_CLOUD_ENG, PB_ADMIN, DW_CLOUD_ENG]))
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng"]) == {
        ("111111111111", "cloud-eng", "standing"),
        ("222222222222", "cloud-eng", "standing"),
    }
    assert reach(["aws-pb-admin"]) == {("222222222222", "admin", "eligible")}
    assert reach(["aws-dw-cloud-eng"]) == {("333333333333", "cloud-eng", "standing")}


def test_account_added_to_a_business_unit_is_reached_by_unit_and_environment_rows() -> None:
    apply_text(
        mapping_yaml([PB_CLOUD_ENG, PB_CLOUD_ENG_DEV.replace("role: cloud-eng", "role: admin")])
    )
    assert reach(["aws-pb-cloud-eng"]) == {
        ("111111111111", "cloud-eng", "standing"),
        ("111111111111", "admin", "standing"),
        ("222222222222", "cloud-eng", "standing"),
    }
    apply_text(
        mapping_yaml(
            [PB_CLOUD_ENG, PB_CLOUD_ENG_DEV.replace("role: cloud-eng", "role: admin")],
            accounts=(*ACCOUNTS, PB_TEST, PB_DEV_2),
        )
    )
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng"]) == {
        ("111111111111", "cloud-eng", "standing"),
        ("111111111111", "admin", "standing"),
        ("222222222222", "cloud-eng", "standing"),
        ("444444444444", "cloud-eng", "standing"),  # the whole unit: the new test account
        ("555555555555", "cloud-eng", "standing"),
        ("555555555555", "admin", "standing"),  # [dev] only: the new dev account
    }


def test_account_moved_to_another_environment_or_unit_moves_its_reach() -> None:
    apply_text(mapping_yaml([PB_CLOUD_ENG_DEV, DW_CLOUD_ENG]))
    assert ("111111111111", "cloud-eng", "standing") in reach(["aws-pb-cloud-eng"])
    moved_env = [a.replace("environment: dev", "environment: test") for a in ACCOUNTS[:1]]
    apply_text(mapping_yaml([PB_CLOUD_ENG_DEV, DW_CLOUD_ENG], accounts=(*moved_env, *ACCOUNTS[1:])))
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng"]) == set()  # pb-dev is a test account now
    moved_unit = [a.replace("business_unit: pb", "business_unit: dw") for a in ACCOUNTS[:1]]
    apply_text(
        mapping_yaml([PB_CLOUD_ENG_DEV, DW_CLOUD_ENG], accounts=(*moved_unit, *ACCOUNTS[1:]))
    )
    assert_rows_exact()
    assert reach(["aws-dw-cloud-eng"]) == {
        ("111111111111", "cloud-eng", "standing"),  # now in dw: dw's rows reach it
        ("333333333333", "cloud-eng", "standing"),
    }


def test_account_removed_is_no_longer_reached() -> None:
    apply_text(mapping_yaml([PB_CLOUD_ENG]))
    apply_text(mapping_yaml([PB_CLOUD_ENG], accounts=(ACCOUNTS[0], ACCOUNTS[2])))
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng"]) == {("111111111111", "cloud-eng", "standing")}


def test_row_access_changed_and_row_removed_show_at_once() -> None:
    apply_text(mapping_yaml([PB_CLOUD_ENG, PB_ADMIN]))
    eligible_again = PB_CLOUD_ENG.replace("access: standing", "access: eligible")
    apply_text(mapping_yaml([eligible_again, PB_ADMIN]))
    assert_rows_exact()
    found = find_entitlement(["aws-pb-cloud-eng"], "111111111111", "cloud-eng", now=timezone.now())
    assert found is not None and found.access == EntitlementAccess.ELIGIBLE
    assert found.max_grant is not None  # the file fills in a default for eligible rows
    apply_text(mapping_yaml([PB_ADMIN]))
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng"]) == set()


def test_account_role_pointer_and_role_changes_need_no_rebuild() -> None:
    apply_text(mapping_yaml([PB_CLOUD_ENG]))
    before = stored_rows()
    apply_text(
        mapping_yaml(
            [PB_CLOUD_ENG],
            roles=(
                "{name: cloud-eng, max_session_minutes: 120}",
                "{name: admin, privileged: true, max_session_minutes: 60}",
            ),
            account_roles=(
                '{account: "111111111111", role: cloud-eng, role_arn: '
                '"arn:aws:iam::111111111111:role/custom/CloudEng"}',
            ),
        )
    )
    assert stored_rows() == before  # ids only: nothing to expand again
    assert_rows_exact()
    found = find_entitlement(["aws-pb-cloud-eng"], "111111111111", "cloud-eng", now=timezone.now())
    assert found is not None
    assert found.role_arn == "arn:aws:iam::111111111111:role/custom/CloudEng"
    assert found.max_session == timedelta(minutes=120)


def test_rollback_restores_the_rows() -> None:
    first = apply_text(mapping_yaml([PB_CLOUD_ENG]))
    apply_text(mapping_yaml([DW_CLOUD_ENG], accounts=(*ACCOUNTS, PB_TEST)))
    rollback_to_version(first.version, actor="tester", reason="back", now=timezone.now())
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng"]) == {
        ("111111111111", "cloud-eng", "standing"),
        ("222222222222", "cloud-eng", "standing"),
    }
    assert reach(["aws-dw-cloud-eng"]) == set()


def test_import_command_expands_rows(tmp_path: Path) -> None:
    path = tmp_path / "mappings.yaml"
    path.write_text(mapping_yaml([PB_CLOUD_ENG_DEV, DW_CLOUD_ENG]), encoding="utf-8")
    call_command("import_mappings", str(path), stdout=StringIO())
    assert MappingVersion.objects.count() == 1
    assert_rows_exact()
    assert reach(["aws-pb-cloud-eng", "aws-dw-cloud-eng"]) == {
        ("111111111111", "cloud-eng", "standing"),
        ("333333333333", "cloud-eng", "standing"),
    }


def test_editor_draft_applied_by_a_second_admin_expands_rows() -> None:
    apply_text(mapping_yaml([PB_CLOUD_ENG]))
    author = UserFactory(email="author@corp.example", directory_groups=["fed-admins"])
    second = UserFactory(email="second@corp.example", directory_groups=["fed-admins"])
    new_account = {
        "id": "444444444444",
        "alias": "pb-test",
        "business_unit": "pb",
        "environment": "test",
    }
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        now = timezone.now()
        document, _ = plan_change(lambda data: data["accounts"].append(new_account))
        draft = propose_change(
            document, actor=author, kind=DraftKind.EDIT, summary="s", reason="r", now=now
        )
        apply_draft(draft.pk, actor=second, now=now)
    assert_rows_exact()
    assert ("444444444444", "cloud-eng", "standing") in reach(["aws-pb-cloud-eng"])


@override_settings(DEMO_MODE=True)
def test_demo_seed_expands_rows() -> None:
    call_command("seed_demo", stdout=StringIO())
    assert EntitlementRow.objects.exists()
    assert_rows_exact()


# --- Writers outside the apply path (shell sessions, factories) -------------------------------


def test_direct_writes_keep_the_rows_exact() -> None:
    pb, dw = BusinessUnitFactory(slug="pb"), BusinessUnitFactory(slug="dw")
    role = LogicalRoleFactory(name="cloud-eng")
    row = GroupMappingFactory(group="g", role=role, business_unit=pb, environments=["dev"])
    assert_rows_exact()
    dev = AccountFactory(business_unit=pb, environment="dev")
    prod = AccountFactory(business_unit=pb, environment="prod")
    other = AccountFactory(business_unit=dw, environment="dev")
    assert_rows_exact()
    assert {r[2] for r in stored_rows()} == {dev.pk}
    Account.objects.filter(pk=prod.pk).update(environment="dev")
    Account.objects.filter(pk=other.pk).update(business_unit=pb)
    assert_rows_exact()
    Account.objects.filter(pk=dev.pk).update(alias="renamed")  # not a reach change
    GroupMapping.objects.filter(pk=row.pk).update(
        access=Access.ELIGIBLE, max_grant=timedelta(hours=2)
    )
    assert_rows_exact()
    AccountFactory(business_unit=pb, environment="dev").delete()
    Account.objects.filter(pk=other.pk).delete()
    assert_rows_exact()
    clear_cache()  # out-of-band edits: no new mapping version invalidates the memo
    assert reach(["g"]) == {
        (dev.account_id, "cloud-eng", "eligible"),
        (prod.account_id, "cloud-eng", "eligible"),
    }
    row.delete()
    assert_rows_exact()
    assert stored_rows() == set()


def test_accounts_named_by_id_are_reached_only_in_their_own_unit() -> None:
    pb, dw = BusinessUnitFactory(slug="pb"), BusinessUnitFactory(slug="dw")
    mine = AccountFactory(business_unit=pb)
    theirs = AccountFactory(business_unit=dw)
    GroupMappingFactory(
        group="g",
        business_unit=pb,
        accounts=sorted([mine.account_id, theirs.account_id, "999999999999"]),
    )
    assert_rows_exact()
    assert {r[2] for r in stored_rows()} == {mine.pk}
    # The named dw account moving into pb brings it into the row's reach, and back out.
    Account.objects.filter(pk=theirs.pk).update(business_unit=pb)
    assert {r[2] for r in stored_rows()} == {mine.pk, theirs.pk}
    Account.objects.filter(pk=theirs.pk).update(business_unit=dw)
    assert {r[2] for r in stored_rows()} == {mine.pk}
    assert_rows_exact()


def test_a_catalog_older_than_the_rows_is_reloaded_not_trusted() -> None:
    pb = BusinessUnitFactory(slug="pb")
    GroupMappingFactory(group="g", role=LogicalRoleFactory(name="cloud-eng"), business_unit=pb)
    first = AccountFactory(business_unit=pb)
    assert reach(["g"]) == {(first.account_id, "cloud-eng", "standing")}
    # An account written without a new mapping version: this process's catalog lacks it, the
    # rows have it. A group set not memoised yet resolves it from a reloaded catalog.
    added = AccountFactory(business_unit=pb)
    assert reach(["g", "unmapped"]) == {
        (first.account_id, "cloud-eng", "standing"),
        (added.account_id, "cloud-eng", "standing"),
    }
