"""``roles_apply``: converge the accounts to the plan in waves (SPEC §3.2, §4 Control loop).

Waves: canary accounts first, then dev, test, prod. Within a wave accounts run in parallel (up
to PROVISIONING_CONCURRENCY); after the wave every account is read back and compared with what
was planned. The first wave with a failed account stops the rollout; later waves stay untouched
and ``resume_rollout`` continues with the stored documents. IAM calls run in worker threads;
every database write (steps, audit) happens in the calling thread, one transaction per account,
so a step is ``done`` only once its read-back matched and its audit event is in the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from federation.audit.chain import record_event
from federation.aws import iam, iam_roles
from federation.models import Rollout, RolloutStep, User
from federation.provisioning.desired import DESCRIPTION, MANAGED_TAG, VERSION_TAG, DesiredRole
from federation.provisioning.plan import (
    AccountPlan,
    RoleChange,
    RolesPlan,
    compare,
    plan_roles,
    wave_key,
)
from federation.refusals import Refused

WAVE_NAMES = ("canary", "dev", "test", "prod")


class RolloutRefused(Refused):
    code = "provisioning.rollout_refused"
    status = 409


class RolloutNotFound(Refused):
    code = "provisioning.rollout_not_found"
    status = 404


@dataclass(frozen=True)
class AccountOutcome:
    account_id: str
    changes: tuple[dict[str, Any], ...]
    before: dict[str, Any]
    after: dict[str, Any]
    error: str = ""


def snapshot(role: iam_roles.IamRole | None) -> dict[str, Any] | None:
    if role is None:
        return None
    return {
        "arn": role.arn,
        "trust_policy": role.trust_policy,
        "max_session_seconds": role.max_session_seconds,
        "attached_policies": list(role.attached_policies),
        "tags": dict(role.tags),
    }


def change_summary(change: RoleChange) -> dict[str, Any]:
    return {"action": change.action, "role": change.name, "differences": list(change.differences)}


def _converge(account_id: str, change: RoleChange, version: str) -> None:
    want, have = change.desired, change.actual
    if change.action == "create" and want is not None:
        iam_roles.create_role(
            account_id,
            name=want.name,
            path=want.path,
            trust_policy=want.trust_policy,
            max_session_seconds=want.max_session_seconds,
            tags=want.tags,
            description=DESCRIPTION,
        )
        for arn in want.policies:
            iam_roles.attach_policy(account_id, want.name, arn)
        return
    # Never touch a role without our tag: checked on the state read just before writing.
    if have is None or MANAGED_TAG not in have.tags:
        raise iam.IamCallFailed(f"role {change.name!r} in {account_id} is not ours; not touched")
    if change.action == "delete":
        iam_roles.delete_role(account_id, have)
        return
    assert want is not None
    if change.trust_diff:
        iam_roles.update_trust_policy(account_id, have.name, want.trust_policy)
    if change.session:
        iam_roles.update_max_session(account_id, have.name, want.max_session_seconds)
    for arn in change.detach:
        iam_roles.detach_policy(account_id, have.name, arn)
    for arn in change.attach:
        iam_roles.attach_policy(account_id, have.name, arn)
    iam_roles.tag_role(account_id, have.name, {**want.tags, VERSION_TAG: version})


def apply_account(account_id: str, desired: Sequence[DesiredRole], version: int) -> AccountOutcome:
    """Bring one account to ``desired`` and read it back. IAM only: no database access, so it
    runs in a worker thread. Failures are returned, never raised."""
    before: dict[str, Any] = {}
    changes: list[RoleChange] = []
    try:
        actual = iam_roles.read_account_roles(account_id)
        changes = [c for c in compare(desired, actual) if c.action != "conflict"]
        before = {c.name: snapshot(c.actual) for c in changes}
        for change in changes:
            _converge(account_id, change, str(version))
        reread = {role.name: role for role in iam_roles.read_account_roles(account_id)}
    except iam.IamCallFailed as exc:
        return AccountOutcome(account_id, tuple(map(change_summary, changes)), before, {}, str(exc))
    after = {name: snapshot(reread.get(name)) for name in before}
    remaining = [c for c in compare(desired, list(reread.values())) if c.action != "conflict"]
    error = ""
    if remaining:
        error = "read back after apply still differs: " + "; ".join(
            f"{c.name}: {', '.join(c.differences)}" for c in remaining
        )
    return AccountOutcome(account_id, tuple(map(change_summary, changes)), before, after, error)


def start_rollout(selection: Sequence[str] = (), *, actor: str, now: datetime) -> Rollout | None:
    """Plan, store the rollout and its steps, and run it. None when nothing is to change.

    Raises ProvisioningInvalid or UnknownAccount (from the plan), and RolloutRefused when an
    account cannot be read (nothing is stored then) or another rollout is still running.
    """
    plan = plan_roles(selection)
    todo = applicable_accounts(plan)
    if not todo:
        return None
    rollout = store_rollout(
        plan_steps(todo), version=plan.version, broker_arn=plan.broker_arn, actor=actor, now=now
    )
    return run_rollout(rollout, actor=actor, now=now)


RUNNING_REFUSAL = (
    "another rollout is running; resume it (roles_apply --resume) or wait for it first"
)


def applicable_accounts(plan: RolesPlan) -> list[AccountPlan]:
    """The accounts with changes to apply; RolloutRefused, naming them, when any account could
    not be read (a rollout never starts on a partial picture)."""
    if plan.errors:
        raise RolloutRefused(
            "no rollout started: "
            + "; ".join(f"account {a.account.account_id}: {a.error}" for a in plan.errors)
        )
    return [a for a in plan.accounts if a.applicable]


def plan_steps(todo: Sequence[AccountPlan]) -> list[RolloutStep]:
    """Unsaved steps holding each account's planned documents (what will be promoted)."""
    return [
        RolloutStep(
            wave=wave_key(a.account)[0],
            wave_name=WAVE_NAMES[min(wave_key(a.account)[0], 3)],
            account_id=a.account.account_id,
            account_alias=a.account.alias,
            environment=a.account.environment,
            desired=[d.to_json() for d in a.desired],
            planned=[change_summary(c) for c in a.applicable],
        )
        for a in todo
    ]


def store_rollout(
    steps: Sequence[RolloutStep],
    *,
    version: int,
    broker_arn: str,
    actor: User | str,
    now: datetime,
    state: str = Rollout.State.RUNNING,
    event: str = "provisioning.rollout_started",
    owe: Callable[[Rollout], None] | None = None,
    **fields: Any,
) -> Rollout:
    """Store a rollout and its steps with its audit event (and ``owe(rollout)``, in the same
    transaction). Raises RolloutRefused when it would run while another rollout runs."""
    try:
        with transaction.atomic(durable=True):
            rollout = Rollout.objects.create(
                created_at=now,
                created_by=actor.label if isinstance(actor, User) else actor,
                mapping_version=version,
                broker_arn=broker_arn,
                state=state,
                **fields,
            )
            for step in steps:
                step.rollout = rollout
            RolloutStep.objects.bulk_create(steps)
            record_event(
                event,
                actor=actor,
                target=f"rollout/{rollout.pk}",
                data={
                    "rollout": rollout.pk,
                    "kind": rollout.kind,
                    "mapping_version": version,
                    "accounts": [s.account_id for s in steps],
                    "rolls_back": rollout.rolls_back_id,
                    "needs_approval": rollout.needs_approval,
                },
                now=now,
            )
            if owe is not None:
                owe(rollout)
    except IntegrityError:
        raise RolloutRefused(RUNNING_REFUSAL) from None
    return rollout


def resume_rollout(rollout_id: int, *, actor: str, now: datetime) -> Rollout:
    """Continue a stopped (or interrupted) rollout from its first unfinished wave."""
    rollout = Rollout.objects.filter(pk=rollout_id).first()
    if rollout is None:
        raise RolloutNotFound(f"there is no rollout {rollout_id}")
    if rollout.state == Rollout.State.DONE:
        raise RolloutRefused(f"rollout {rollout_id} is already done")
    if rollout.state in (Rollout.State.PROPOSED, Rollout.State.CANCELLED):
        raise RolloutRefused(
            f"rollout {rollout_id} is {rollout.state}: it never ran, so there is nothing to resume"
        )
    try:
        with transaction.atomic(durable=True):
            Rollout.objects.filter(pk=rollout.pk).update(state=Rollout.State.RUNNING)
            record_event(
                "provisioning.rollout_resumed",
                actor=actor,
                target=f"rollout/{rollout.pk}",
                data={"rollout": rollout.pk},
                now=now,
            )
    except IntegrityError:
        raise RolloutRefused(RUNNING_REFUSAL) from None
    return run_rollout(rollout, actor=actor, now=now)


def continue_rollout(rollout_id: int, *, now: datetime) -> Rollout | None:
    """Run a rollout stored as running (by the web page, on its worker); None when it is not
    running any more (a duplicate message, or it was stopped)."""
    rollout = Rollout.objects.select_related("approved_by").filter(pk=rollout_id).first()
    if rollout is None or rollout.state != Rollout.State.RUNNING:
        return None
    actor = rollout.approved_by.label if rollout.approved_by else rollout.created_by
    return run_rollout(rollout, actor=actor, now=now)


def run_rollout(rollout: Rollout, *, actor: str, now: datetime) -> Rollout:
    steps = list(rollout.steps.exclude(state=RolloutStep.State.DONE).order_by("wave", "account_id"))
    workers = max(1, settings.PROVISIONING_CONCURRENCY)
    for wave, grouped in groupby(steps, key=lambda s: s.wave):
        wave_steps = list(grouped)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(
                pool.map(
                    lambda step: apply_account(
                        step.account_id,
                        [DesiredRole.from_json(d) for d in step.desired],
                        rollout.mapping_version,
                    ),
                    wave_steps,
                )
            )
        failed = [
            _record(rollout, step, outcome, actor=actor, now=now)
            for step, outcome in zip(wave_steps, outcomes, strict=True)
        ]
        failures = [step for step, bad in zip(wave_steps, failed, strict=True) if bad]
        if failures:
            reason = (
                f"wave {WAVE_NAMES[min(wave, 3)]} failed in "
                + ", ".join(f"{s.account_id} ({s.account_alias})" for s in failures)
                + "; later waves untouched"
            )
            return _finish(rollout, Rollout.State.STOPPED, reason, actor=actor, now=now)
    return _finish(rollout, Rollout.State.DONE, "", actor=actor, now=now)


def _record(
    rollout: Rollout, step: RolloutStep, outcome: AccountOutcome, *, actor: str, now: datetime
) -> bool:
    """Store one account's outcome with its audit event; True when it failed."""
    state = RolloutStep.State.FAILED if outcome.error else RolloutStep.State.DONE
    with transaction.atomic(durable=True):
        RolloutStep.objects.filter(pk=step.pk).update(
            state=state,
            before=outcome.before,
            after=outcome.after,
            error=outcome.error,
            finished_at=now,
        )
        record_event(
            "provisioning.account_failed" if outcome.error else "provisioning.account_applied",
            actor=actor,
            account_id=step.account_id,
            target=f"rollout/{rollout.pk}",
            data={
                "rollout": rollout.pk,
                "wave": step.wave_name,
                "changes": list(outcome.changes),
                "before": outcome.before,
                "after": outcome.after,
                "error": outcome.error,
            },
            now=now,
        )
    return bool(outcome.error)


def _finish(rollout: Rollout, state: str, reason: str, *, actor: str, now: datetime) -> Rollout:
    with transaction.atomic(durable=True):
        Rollout.objects.filter(pk=rollout.pk).update(
            state=state, stopped_reason=reason, finished_at=now
        )
        record_event(
            f"provisioning.rollout_{state}",
            actor=actor,
            target=f"rollout/{rollout.pk}",
            data={"rollout": rollout.pk, "reason": reason},
            now=now,
        )
    rollout.refresh_from_db()
    return rollout
