"""Rolling a rollout back: re-apply, in every account it touched, the documents of that account's
previous successful rollout step (SPEC §4 Control loop: "have a rollback plan").

A rollback is a rollout like any other (stored, in waves, read back, audited, resumable), whose
steps hold the earlier documents instead of the tables'. It undoes the accounts, not the tables:
until the tables are rolled back too (``rollback_mappings``) drift_check reports the difference,
which is the point of an emergency rollback (the tables' change is what to fix next).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from federation.models import Rollout, RolloutStep, User
from federation.provisioning.apply import RolloutNotFound, RolloutRefused, store_rollout


@dataclass(frozen=True)
class RollbackPlan:
    target: Rollout
    steps: tuple[RolloutStep, ...]  # unsaved, holding the earlier documents
    sources: dict[str, int]  # account id -> the rollout whose documents it gets back
    version: int

    @property
    def text(self) -> str:
        lines = [f"Rolling back rollout {self.target.pk} ({self.target.state}):"]
        lines += [
            f"  {s.wave_name:6} {s.account_id} ({s.account_alias}): the documents of rollout "
            f"{self.sources[s.account_id]} ({len(s.desired)} role(s))"
            for s in self.steps
        ]
        return "\n".join(lines) + "\n"


def plan_rollback(rollout_id: int) -> RollbackPlan:
    """What rolling back ``rollout_id`` re-applies, account by account. Raises RolloutNotFound,
    and RolloutRefused for a rollout that never ran or still runs, or when an account it touched
    has no earlier successful step to return to (naming the accounts)."""
    target = Rollout.objects.filter(pk=rollout_id).first()
    if target is None:
        raise RolloutNotFound(f"there is no rollout {rollout_id}")
    if target.state in (Rollout.State.PROPOSED, Rollout.State.CANCELLED):
        raise RolloutRefused(f"rollout {rollout_id} never ran: there is nothing to roll back")
    if target.state == Rollout.State.RUNNING:
        raise RolloutRefused(f"rollout {rollout_id} is still running; let it stop first")
    touched = list(
        target.steps.exclude(state=RolloutStep.State.PENDING).order_by("wave", "account_id")
    )
    if not touched:
        raise RolloutRefused(f"rollout {rollout_id} changed no account: nothing to roll back")
    steps: list[RolloutStep] = []
    sources: dict[str, int] = {}
    versions: list[int] = []
    missing: list[str] = []
    for step in touched:
        previous = (
            RolloutStep.objects.select_related("rollout")
            .filter(
                account_id=step.account_id,
                state=RolloutStep.State.DONE,
                rollout__pk__lt=target.pk,
            )
            .order_by("-rollout__pk")
            .first()
        )
        if previous is None:
            missing.append(f"{step.account_id} ({step.account_alias})")
            continue
        sources[step.account_id] = previous.rollout_id
        versions.append(previous.rollout.mapping_version)
        steps.append(
            RolloutStep(
                wave=step.wave,
                wave_name=step.wave_name,
                account_id=step.account_id,
                account_alias=step.account_alias,
                environment=step.environment or previous.environment,
                desired=previous.desired,
                planned=[{"action": "rollback", "to_rollout": previous.rollout_id}],
            )
        )
    if missing:
        raise RolloutRefused(
            f"rollout {rollout_id} cannot be rolled back: no earlier successful rollout "
            f"touched {', '.join(missing)}. Roll the tables back (rollback_mappings) and apply."
        )
    return RollbackPlan(target, tuple(steps), sources, max(versions))


def store_rollback(
    plan: RollbackPlan, *, actor: User | str, now: datetime, **fields: Any
) -> Rollout:
    """Store the rollback as a rollout (running unless ``fields`` say otherwise)."""
    return store_rollout(
        plan.steps,
        version=plan.version,
        broker_arn=plan.target.broker_arn,
        actor=actor,
        now=now,
        kind=Rollout.Kind.ROLLBACK,
        rolls_back=plan.target,
        **fields,
    )
