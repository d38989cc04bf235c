"""The scope rule: which accounts a mapping row reaches (federation/entitlements/scope.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from federation.entitlements.scope import accounts_reached

ENVS = ["dev", "test", "prod"]


@dataclass(frozen=True)
class Acct:
    account_id: str
    business_unit: str
    environment: str


ACCOUNTS = [
    Acct("111111111111", "pb", "dev"),
    Acct("222222222222", "pb", "prod"),
    Acct("333333333333", "dw", "dev"),
    Acct("444444444444", "dw", "prod"),
]
BY_ID = {a.account_id: a for a in ACCOUNTS}
OF_UNIT = {
    "pb": [a for a in ACCOUNTS if a.business_unit == "pb"],
    "dw": [a for a in ACCOUNTS if a.business_unit == "dw"],
}


def reached(unit: str, environments: list[str], account_ids: list[str]) -> list[str]:
    found = accounts_reached(
        unit, environments, account_ids, accounts_by_id=BY_ID, accounts_of_unit=OF_UNIT
    )
    return [a.account_id for a in found]


def test_row_without_scope_reaches_every_account_of_its_unit() -> None:
    assert reached("pb", [], []) == ["111111111111", "222222222222"]


def test_environments_narrow_to_accounts_in_those_environments() -> None:
    assert reached("pb", ["prod"], []) == ["222222222222"]
    assert reached("pb", ["test"], []) == []


def test_accounts_narrow_to_the_named_accounts() -> None:
    assert reached("pb", [], ["222222222222"]) == ["222222222222"]


def test_named_account_of_another_unit_is_never_reached() -> None:
    assert reached("pb", [], ["333333333333"]) == []
    assert reached("pb", [], ["333333333333", "111111111111"]) == ["111111111111"]


def test_accounts_and_environments_narrow_together() -> None:
    assert reached("pb", ["dev"], ["111111111111", "222222222222"]) == ["111111111111"]


def test_unknown_or_repeated_account_ids_reach_nothing_more() -> None:
    assert reached("pb", [], ["999999999999"]) == []
    assert reached("pb", [], ["111111111111", "111111111111"]) == ["111111111111"]


def test_unit_without_accounts_reaches_nothing() -> None:
    assert reached("empty", [], []) == []
    assert reached("empty", [], ["111111111111"]) == []


@given(
    unit=st.sampled_from(["pb", "dw", "empty"]),
    environments=st.lists(st.sampled_from(ENVS), unique=True, max_size=2),
    account_ids=st.lists(st.sampled_from([*BY_ID, "999999999999"]), max_size=4),
)
def test_matches_the_naive_definition(
    unit: str, environments: list[str], account_ids: list[str]
) -> None:
    expected = {
        a.account_id
        for a in ACCOUNTS
        if a.business_unit == unit
        and (not environments or a.environment in environments)
        and (not account_ids or a.account_id in account_ids)
    }
    found = reached(unit, environments, account_ids)
    assert len(found) == len(set(found))
    assert set(found) == expected
