from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from access_requests.models import Grant
from federation.entitlements import resolve as entitlements
from federation.entitlements.resolve import find_entitlement, resolve_entitlements
from federation.models import Access, Account, EntitlementAccess, GroupMapping, MappingVersion
from tests.factories import (
    AccountFactory,
    AccountRoleFactory,
    BusinessUnitFactory,
    GrantFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_bus() -> dict[str, Account]:
    pb = BusinessUnitFactory(slug="pb")
    dw = BusinessUnitFactory(slug="dw")
    return {
        "pb-dev": AccountFactory(alias="pb-dev", business_unit=pb, environment="dev"),
        "pb-prod": AccountFactory(alias="pb-prod", business_unit=pb, environment="prod"),
        "dw-dev": AccountFactory(alias="dw-dev", business_unit=dw, environment="dev"),
        "dw-prod": AccountFactory(alias="dw-prod", business_unit=dw, environment="prod"),
    }


def keys(result: list[entitlements.Entitlement]) -> set[tuple[str, str, str]]:
    return {(e.account_alias, e.role, e.access) for e in result}


def test_standing_mapping_reaches_only_its_own_business_unit(two_bus: dict[str, Account]) -> None:
    role = LogicalRoleFactory(name="cloud-eng")
    GroupMappingFactory(
        group="aws-pb-cloud-eng", role=role, business_unit=two_bus["pb-dev"].business_unit
    )
    GroupMappingFactory(
        group="aws-dw-cloud-eng", role=role, business_unit=two_bus["dw-dev"].business_unit
    )
    result = resolve_entitlements(["aws-pb-cloud-eng"], now=timezone.now())
    assert keys(result) == {
        ("pb-dev", "cloud-eng", "standing"),
        ("pb-prod", "cloud-eng", "standing"),
    }
    assert all(e.via == ("aws-pb-cloud-eng",) for e in result)


def test_environment_and_account_scopes_narrow_the_mapping(two_bus: dict[str, Account]) -> None:
    pb = two_bus["pb-dev"].business_unit
    GroupMappingFactory(
        group="g-env", role=LogicalRoleFactory(name="ops"), business_unit=pb, environments=["prod"]
    )
    GroupMappingFactory(
        group="g-acct",
        role=LogicalRoleFactory(name="release"),
        business_unit=pb,
        accounts=[two_bus["pb-dev"].account_id],
    )
    result = resolve_entitlements(["g-env", "g-acct"], now=timezone.now())
    assert keys(result) == {("pb-prod", "ops", "standing"), ("pb-dev", "release", "standing")}


def test_row_naming_an_account_of_another_business_unit_yields_nothing(
    two_bus: dict[str, Account],
) -> None:
    GroupMappingFactory(
        group="g",
        role=LogicalRoleFactory(name="admin"),
        business_unit=two_bus["pb-dev"].business_unit,
        accounts=[two_bus["dw-prod"].account_id],
    )
    assert resolve_entitlements(["g"], now=timezone.now()) == []


def test_eligible_rows_are_listed_but_not_usable(two_bus: dict[str, Account]) -> None:
    GroupMappingFactory(
        group="g",
        role=LogicalRoleFactory(name="admin", privileged=True),
        business_unit=two_bus["pb-prod"].business_unit,
        environments=["prod"],
        access=Access.ELIGIBLE,
        max_grant=timedelta(hours=4),
    )
    [entitlement] = resolve_entitlements(["g"], now=timezone.now())
    assert entitlement.access == "eligible"
    assert not entitlement.usable
    assert entitlement.max_grant == timedelta(hours=4)
    assert entitlement.privileged


def test_standing_wins_over_eligible_for_the_same_account_role(two_bus: dict[str, Account]) -> None:
    pb = two_bus["pb-dev"].business_unit
    role = LogicalRoleFactory(name="ops")
    GroupMappingFactory(group="a", role=role, business_unit=pb, access=Access.ELIGIBLE)
    GroupMappingFactory(group="b", role=role, business_unit=pb, environments=["dev"])
    by_alias = {e.account_alias: e for e in resolve_entitlements(["a", "b"], now=timezone.now())}
    assert by_alias["pb-dev"].access is EntitlementAccess.STANDING
    assert by_alias["pb-dev"].via == ("b",)
    assert by_alias["pb-prod"].access is EntitlementAccess.ELIGIBLE


def test_account_role_override_sets_arn_and_session(two_bus: dict[str, Account]) -> None:
    role = LogicalRoleFactory(name="ops", max_session=timedelta(hours=2))
    AccountRoleFactory(
        account=two_bus["pb-dev"],
        role=role,
        role_arn="arn:aws:iam::111:role/x",
        max_session=timedelta(minutes=30),
    )
    GroupMappingFactory(group="g", role=role, business_unit=two_bus["pb-dev"].business_unit)
    by_alias = {e.account_alias: e for e in resolve_entitlements(["g"], now=timezone.now())}
    assert by_alias["pb-dev"].role_arn == "arn:aws:iam::111:role/x"
    assert by_alias["pb-dev"].max_session == timedelta(minutes=30)
    assert by_alias["pb-prod"].role_arn == f"arn:aws:iam::{two_bus['pb-prod'].account_id}:role/ops"
    assert by_alias["pb-prod"].max_session == timedelta(hours=2)


def _eligible_with_grant(two_bus: dict[str, Account], **grant: object) -> tuple[object, Grant]:
    role = LogicalRoleFactory(name="admin")
    GroupMappingFactory(
        group="g",
        role=role,
        business_unit=two_bus["pb-prod"].business_unit,
        environments=["prod"],
        access=Access.ELIGIBLE,
    )
    user = UserFactory(directory_groups=["g"])
    made = GrantFactory(
        request__requester=user, request__account=two_bus["pb-prod"], request__role=role, **grant
    )
    return user, made


def test_active_grant_makes_an_eligible_role_usable_until_it_ends(
    two_bus: dict[str, Account],
) -> None:
    now = timezone.now()
    user, grant = _eligible_with_grant(two_bus, starts_at=now, ends_at=now + timedelta(hours=1))
    [e] = resolve_entitlements(["g"], now=now + timedelta(minutes=5), user_id=user.pk)
    assert (e.access, e.grant_id, e.grant_ends_at) == ("grant", grant.pk, grant.ends_at)
    assert e.access is EntitlementAccess.GRANT
    account = grant.account
    assert (
        find_entitlement(
            ["g"], account.account_id, "admin", now=now + timedelta(minutes=5), user_id=user.pk
        )
        == e
    )
    assert e.usable
    [later] = resolve_entitlements(["g"], now=now + timedelta(hours=1), user_id=user.pk)
    assert later.access == "eligible"


def test_revoked_grant_gives_nothing(two_bus: dict[str, Account]) -> None:
    now = timezone.now()
    user, _ = _eligible_with_grant(two_bus, state=Grant.State.REVOKED, revoked_at=now)
    [e] = resolve_entitlements(["g"], now=now, user_id=user.pk)
    assert e.access == "eligible"


def test_grant_is_dropped_once_the_user_leaves_the_eligible_group(
    two_bus: dict[str, Account],
) -> None:
    user, _ = _eligible_with_grant(two_bus)
    assert resolve_entitlements(["other"], now=timezone.now(), user_id=user.pk) == []


def test_another_users_grant_never_applies(two_bus: dict[str, Account]) -> None:
    _, _ = _eligible_with_grant(two_bus)
    stranger = UserFactory(directory_groups=["g"])
    [e] = resolve_entitlements(["g"], now=timezone.now(), user_id=stranger.pk)
    assert e.access == "eligible"


def test_a_new_mapping_version_invalidates_the_memo(two_bus: dict[str, Account]) -> None:
    role = LogicalRoleFactory(name="ops")
    mapping = GroupMappingFactory(
        group="g", role=role, business_unit=two_bus["pb-dev"].business_unit
    )
    assert len(resolve_entitlements(["g"], now=timezone.now())) == 2
    mapping.delete()
    # Stale until a version is written: every change goes through federation.mappings.
    assert len(resolve_entitlements(["g"], now=timezone.now())) == 2
    MappingVersion.objects.create(number=1, actor="t", source="seed", document={})
    assert resolve_entitlements(["g"], now=timezone.now()) == []


# --- property: business units never leak into each other ------------------------------------

ENVS = ["dev", "test", "prod"]
GROUPS = [f"grp{i}" for i in range(8)]

row_strategy = st.fixed_dictionaries(
    {
        "group": st.sampled_from(GROUPS),
        "bu": st.integers(0, 2),
        "role": st.integers(0, 2),
        "envs": st.lists(st.sampled_from(ENVS), unique=True, max_size=2),
        "accounts": st.lists(st.integers(0, 8), unique=True, max_size=3),
        "access": st.sampled_from(["standing", "eligible"]),
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    account_specs=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(ENVS)), min_size=1, max_size=9
    ),
    rows=st.lists(row_strategy, max_size=12),
    user_groups=st.sets(st.sampled_from(GROUPS)),
)
def test_business_units_never_leak(
    account_specs: list[tuple[int, str]], rows: list[dict[str, object]], user_groups: set[str]
) -> None:
    with transaction.atomic():
        entitlements.clear_cache()
        bus = [BusinessUnitFactory(slug=f"p{i}") for i in range(3)]
        roles = [LogicalRoleFactory(name=f"r{i}") for i in range(3)]
        accounts = [
            AccountFactory(business_unit=bus[bu], environment=env) for bu, env in account_specs
        ]
        seen: set[tuple[object, ...]] = set()
        made: list[GroupMapping] = []
        for row in rows:
            scoped = sorted({accounts[i].account_id for i in row["accounts"] if i < len(accounts)})  # type: ignore[attr-defined]
            envs = sorted(row["envs"])  # type: ignore[call-overload]
            key = (row["group"], row["bu"], row["role"], tuple(envs), tuple(scoped))
            if key in seen:
                continue
            seen.add(key)
            made.append(
                GroupMappingFactory(
                    group=row["group"],
                    business_unit=bus[row["bu"]],
                    role=roles[row["role"]],  # type: ignore[index]
                    environments=envs,
                    accounts=scoped,
                    access=row["access"],
                )
            )

        now = timezone.now()
        result = resolve_entitlements(user_groups, now=now)

        # Oracle: the naive definition, row by row over every account.
        expected: dict[tuple[str, str], str] = {}
        for m in made:
            if m.group not in user_groups:
                continue
            for a in accounts:
                if a.business_unit_id != m.business_unit_id:
                    continue
                if m.environments and a.environment not in m.environments:
                    continue
                if m.accounts and a.account_id not in m.accounts:
                    continue
                k = (a.account_id, m.role.name)
                if expected.get(k) != "standing":
                    expected[k] = m.access
        assert {e.key: e.access for e in result} == expected
        # The single look-up issuance uses agrees with the full list, hit or miss.
        for e in result:
            assert find_entitlement(user_groups, e.account_id, e.role, now=now) == e
        for a in accounts:
            for r in roles:
                if (a.account_id, r.name) not in expected:
                    assert find_entitlement(user_groups, a.account_id, r.name, now=now) is None
        bu_of = {a.account_id: a.business_unit.slug for a in accounts}
        for e in result:
            assert e.business_unit == bu_of[e.account_id]
            assert any(m.business_unit.slug == e.business_unit and m.group in e.via for m in made)
        transaction.set_rollback(True)
