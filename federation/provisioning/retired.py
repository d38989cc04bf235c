"""Accounts the tables no longer hold, whose managed roles are still ours to remove.

When an account leaves the tables, the roles we made there would otherwise linger unseen. Every
account a rollout ever ran in is recorded in its steps, so the plan (and drift_check) keeps
reading such an account, planning its managed roles for deletion, until a rollout step has left
it with none. Only accounts we rolled out to are known this way: roles made in an account by
``export_roles`` templates or by hand, in an account later removed, are not seen (a limit,
docs/control-loop.md). An account that cannot be reached any more (closed) is reported, not an
error: it must not block every later rollout.
"""

from __future__ import annotations

from collections.abc import Collection

from federation.mappings.document import AccountRow
from federation.models import Environment, Rollout, RolloutStep


def retired_accounts(current: Collection[str]) -> list[AccountRow]:
    """Accounts outside ``current`` (the tables' account ids) that a rollout ran in, unless the
    last step there was applied with no role wanted (every managed role removed)."""
    latest = (
        RolloutStep.objects.exclude(account_id__in=list(current))
        .filter(
            rollout__state__in=[Rollout.State.RUNNING, Rollout.State.STOPPED, Rollout.State.DONE]
        )
        .order_by("account_id", "-rollout_id")
        .distinct("account_id")
    )
    return [
        AccountRow(
            account_id=step.account_id,
            alias=step.account_alias,
            business_unit="",
            # Unknown on steps from before it was recorded: the last wave, and prod's rules.
            environment=step.environment or Environment.PROD,
            approvals_required=0,
        )
        for step in latest
        if not (step.state == RolloutStep.State.DONE and not step.desired)
    ]
