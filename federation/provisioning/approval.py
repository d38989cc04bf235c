"""Applying (or rolling back) the roles from the web page, with a second administrator for prod.

An admin proposes: the plan's documents are stored as a rollout at once, so what a second admin
approves is exactly what runs (the same promotion rule as ``--resume``). A rollout touching a
prod account waits, ``proposed``, for another admin, as a sensitive mapping draft does (the same
``MAPPING_CHANGES_NEED_SECOND_ADMIN`` switch, and the same person check across identities); any
other starts at once. Running is the worker's (``runner.run_rollout``), owed through the outbox
in the transaction that marks the rollout running. Every step is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from access_requests.services import effects
from federation.audit.chain import record_event, record_refusal
from federation.models import Environment, MappingVersion, Rollout, RolloutStep, User
from federation.permissions import is_admin
from federation.provisioning import runner
from federation.provisioning.apply import (
    RUNNING_REFUSAL,
    RolloutNotFound,
    RolloutRefused,
    applicable_accounts,
    plan_steps,
    store_rollout,
)
from federation.provisioning.plan import plan_roles
from federation.provisioning.rollback import plan_rollback, store_rollback
from federation.refusals import Refused


class RolloutForbidden(Refused):
    code = "provisioning.not_admin"
    status = 403


class SelfApprovalRefused(Refused):
    """The admin who proposed a prod rollout tried to approve it (through any identity)."""

    code = "provisioning.self_approval"
    status = 403


class RolloutNotProposed(Refused):
    code = "provisioning.not_proposed"
    status = 409


class RolloutStale(Refused):
    """The tables moved since the rollout was planned; it was cancelled, nothing ran."""

    code = "provisioning.rollout_stale"
    status = 409


def _admin(actor: User) -> None:
    if not is_admin(actor):
        raise RolloutForbidden("Only administrators can apply or roll back IAM roles.")


def needs_second_admin(steps: Sequence[RolloutStep]) -> bool:
    return settings.MAPPING_CHANGES_NEED_SECOND_ADMIN and any(
        s.environment == Environment.PROD for s in steps
    )


def _owe_run(rollout: Rollout) -> None:
    if rollout.state == Rollout.State.RUNNING:
        effects.enqueue(runner.run_rollout, rollout.pk)


def _start_state(needs_approval: bool) -> tuple[str, str]:
    """The state a web rollout is stored in, and the audit event saying so."""
    if needs_approval:
        return Rollout.State.PROPOSED, "provisioning.rollout_proposed"
    return Rollout.State.RUNNING, "provisioning.rollout_started"


def propose_rollout(selection: Sequence[str] = (), *, actor: User, now: datetime) -> Rollout | None:
    """Store the roles plan of ``selection`` (all accounts by default) as a rollout: proposed
    when it touches prod, else running on a worker. None when every account is in sync.

    Raises RolloutForbidden, ProvisioningInvalid and UnknownAccount (from the plan), and
    RolloutRefused when an account cannot be read or another rollout runs.
    """
    _admin(actor)
    plan = plan_roles(selection)
    todo = applicable_accounts(plan)
    if not todo:
        return None
    steps = plan_steps(todo)
    needs = needs_second_admin(steps)
    state, event = _start_state(needs)
    return store_rollout(
        steps,
        version=plan.version,
        broker_arn=plan.broker_arn,
        actor=actor,
        now=now,
        state=state,
        event=event,
        owe=_owe_run,
        requested_by=actor,
        needs_approval=needs,
    )


def propose_rollback(rollout_id: int, *, actor: User, now: datetime) -> Rollout:
    """Store the rollback of ``rollout_id`` (``rollback.plan_rollback``), proposed when it
    touches prod. Raises as ``plan_rollback`` does, and RolloutForbidden."""
    _admin(actor)
    plan = plan_rollback(rollout_id)
    needs = needs_second_admin(plan.steps)
    state, event = _start_state(needs)
    return store_rollback(
        plan,
        actor=actor,
        now=now,
        state=state,
        event=event,
        owe=_owe_run,
        requested_by=actor,
        needs_approval=needs,
    )


def may_approve(rollout: Rollout, user: User) -> bool:
    """A proposed rollout can be approved by an admin who is not its proposer (any identity)."""
    return (
        rollout.state == Rollout.State.PROPOSED
        and is_admin(user)
        and not (rollout.requested_by is not None and rollout.requested_by.is_same_person(user))
    )


def approve_rollout(rollout_id: int, *, actor: User, now: datetime) -> Rollout:
    """Approve a proposed rollout and owe its run to a worker.

    Raises RolloutForbidden, RolloutNotFound, RolloutNotProposed, SelfApprovalRefused (audited),
    RolloutStale when the tables moved since an apply was planned (it is cancelled: nothing
    runs), and RolloutRefused while another rollout runs (it stays proposed).
    """
    _admin(actor)
    refusal: Refused | None = None
    try:
        with transaction.atomic(durable=True):
            rollout = (
                Rollout.objects.select_for_update(of=("self",))
                .select_related("requested_by")
                .filter(pk=rollout_id)
                .first()
            )
            if rollout is None:
                raise RolloutNotFound(f"there is no rollout {rollout_id}")
            target = f"rollout/{rollout.pk}"
            current = MappingVersion.objects.order_by("-number").values_list("number", flat=True)
            if rollout.state != Rollout.State.PROPOSED:
                refusal = RolloutNotProposed(
                    f"Rollout {rollout.pk} is {rollout.state}; only a proposed one can be approved."
                )
            elif not may_approve(rollout, actor):
                refusal = SelfApprovalRefused(
                    "This rollout touches a prod account and needs a second administrator: you "
                    "cannot approve your own."
                )
            elif rollout.kind == Rollout.Kind.APPLY and current.first() != rollout.mapping_version:
                refusal = RolloutStale(
                    f"The tables changed since rollout {rollout.pk} was planned (against mapping "
                    f"version {rollout.mapping_version}); it was cancelled. Plan it again."
                )
                _close(rollout, Rollout.State.CANCELLED, refusal.message, actor=actor, now=now)
            if refusal is not None:
                record_refusal(
                    "provisioning.rollout_refused",
                    refusal,
                    actor=actor,
                    target=target,
                    now=now,
                    data={"rollout": rollout.pk, "action": "approve"},
                )
            else:
                rollout.state = Rollout.State.RUNNING
                rollout.approved_by, rollout.approved_at = actor, now
                rollout.save(update_fields=["state", "approved_by", "approved_at"])
                record_event(
                    "provisioning.rollout_approved",
                    actor=actor,
                    target=target,
                    now=now,
                    data={"rollout": rollout.pk, "requested_by": rollout.created_by},
                )
                _owe_run(rollout)
    except IntegrityError:
        raise RolloutRefused(RUNNING_REFUSAL) from None
    if refusal is not None:
        raise refusal
    return rollout


def cancel_rollout(rollout_id: int, *, actor: User, comment: str = "", now: datetime) -> Rollout:
    """Cancel a proposed rollout (its proposer, or another admin). Nothing runs."""
    _admin(actor)
    with transaction.atomic(durable=True):
        rollout = Rollout.objects.select_for_update().filter(pk=rollout_id).first()
        if rollout is None:
            raise RolloutNotFound(f"there is no rollout {rollout_id}")
        if rollout.state != Rollout.State.PROPOSED:
            raise RolloutNotProposed(
                f"Rollout {rollout.pk} is {rollout.state}; only a proposed one can be cancelled."
            )
        _close(rollout, Rollout.State.CANCELLED, comment[:500], actor=actor, now=now)
    return rollout


def _close(rollout: Rollout, state: str, reason: str, *, actor: User, now: datetime) -> None:
    rollout.state, rollout.stopped_reason, rollout.finished_at = state, reason, now
    rollout.save(update_fields=["state", "stopped_reason", "finished_at"])
    record_event(
        f"provisioning.rollout_{state}",
        actor=actor,
        target=f"rollout/{rollout.pk}",
        now=now,
        data={"rollout": rollout.pk, "reason": reason},
    )
