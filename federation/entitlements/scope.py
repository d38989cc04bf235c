"""Which accounts a mapping row reaches (SPEC §3.3): the one place the scope rule is written.

Both readers of mapping rows use it: entitlement resolution (``federation/entitlements/resolve.py``,
over the tables) and the mapping plan's access diff (``federation/mappings/plan.py``, over a
document), so what a plan says a group gains is what resolution then gives it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, TypeVar


class PlacedAccount(Protocol):
    """An account record that knows its business unit (slug) and environment."""

    @property
    def business_unit(self) -> str: ...

    @property
    def environment(self) -> str: ...


AccountT = TypeVar("AccountT", bound=PlacedAccount)


def accounts_reached(
    business_unit: str,
    environments: Collection[str],
    account_ids: Collection[str],
    *,
    accounts_by_id: Mapping[str, AccountT],
    accounts_of_unit: Mapping[str, Sequence[AccountT]],
) -> tuple[AccountT, ...]:
    """The accounts a row of ``business_unit`` with this scope reaches, each once.

    Business-unit isolation: only accounts of ``business_unit``, even when ``account_ids`` names
    an account of another unit. ``account_ids`` narrows to the named accounts (unknown ids reach
    nothing), ``environments`` to accounts in those environments; with neither the row reaches
    every account of its unit. Order: ``account_ids`` order, else ``accounts_of_unit`` order.
    """
    candidates: Sequence[AccountT | None]
    if account_ids:
        candidates = [accounts_by_id.get(account_id) for account_id in dict.fromkeys(account_ids)]
    else:
        candidates = accounts_of_unit.get(business_unit, ())
    return tuple(
        account
        for account in candidates
        if account is not None
        and account.business_unit == business_unit
        and (not environments or account.environment in environments)
    )
