"""The control loop's records: role rollouts and their per-account steps (docs/control-loop.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from federation.models.identity import User


class Rollout(models.Model):
    """One ``roles_apply``: the plan's desired roles per account, applied wave by wave.

    A rollout stops at the first wave with a failed account and leaves later waves untouched;
    ``roles_apply --resume`` continues it with the same stored documents (what was tested in the
    earlier waves is what is promoted), never with the tables as they are later.
    """

    class State(models.TextChoices):
        PROPOSED = "proposed", "awaiting a second administrator"
        RUNNING = "running", "running"
        STOPPED = "stopped", "stopped"
        DONE = "done", "done"
        CANCELLED = "cancelled", "cancelled"

    class Kind(models.TextChoices):
        APPLY = "apply", "apply the tables"
        ROLLBACK = "rollback", "roll back"

    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=320)
    mapping_version = models.PositiveIntegerField()
    broker_arn = models.CharField(max_length=2048)
    state = models.CharField(max_length=9, choices=State.choices, default=State.RUNNING)
    stopped_reason = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.APPLY)
    # A rollback re-applies the documents each account had before this rollout.
    rolls_back = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="rollbacks"
    )
    # Web rollouts: who asked, and the second administrator a prod account needs.
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    needs_approval = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["proposed", "running", "stopped", "done", "cancelled"]),
                name="rollout_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["apply", "rollback"]), name="rollout_kind_valid"
            ),
            # One rollout at a time, whatever path starts or resumes it.
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="running"), name="rollout_one_running"
            ),
            # A rollout that needs a second administrator never runs without one, whatever
            # path writes the row (the person check across identities is in the service).
            models.CheckConstraint(
                condition=Q(needs_approval=False)
                | Q(state__in=["proposed", "cancelled"])
                | (Q(approved_by__isnull=False) & ~Q(approved_by=F("requested_by"))),
                name="rollout_second_admin",
            ),
        ]

    def __str__(self) -> str:
        return f"rollout #{self.pk} ({self.state})"


class RolloutStep(models.Model):
    """One account in a rollout. ``done`` is written only after the account's roles were read
    back and matched; a crash leaves the step ``pending``, and resuming re-runs it (the apply
    converges, so re-running a half-applied account is safe)."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="steps")
    wave = models.PositiveSmallIntegerField()
    wave_name = models.CharField(max_length=8)
    account_id = models.CharField(max_length=12)
    account_alias = models.CharField(max_length=63)
    environment = models.CharField(max_length=8, blank=True)  # blank on rows from before 0018
    desired = models.JSONField()  # the account's DesiredRole documents at plan time
    planned = models.JSONField(default=list)  # the changes the plan showed
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rollout", "wave", "account_id"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "account_id"], name="rollout_step_unique"),
            models.CheckConstraint(
                condition=Q(state__in=["pending", "done", "failed"]),
                name="rollout_step_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_id}/{self.account_id} ({self.state})"


class DriftFinding(models.Model):
    """One role in one account that differs from the tables (SPEC §4 Control loop), from the
    first check that saw it until the check that no longer does (``resolved_at``). At most one
    open finding per (account, role name)."""

    account_id = models.CharField(max_length=12)
    account_alias = models.CharField(max_length=63)
    role_name = models.CharField(max_length=64)
    action = models.CharField(max_length=8)  # what apply would do: create, update, delete, conflict
    differences = models.JSONField(default=list)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account_id", "role_name", "-first_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_id", "role_name"],
                condition=Q(resolved_at__isnull=True),
                name="drift_finding_one_open_per_role",
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "account_id"])]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.role_name} ({self.action})"


class RoleLastUsed(models.Model):
    """IAM's RoleLastUsed of the role an account holds for a logical role, as the last drift
    check read it (the same list call: no call per role). With our own issuance records it says
    which entitlements nobody used (``federation/entitlements/usage.py``)."""

    account_id = models.CharField(max_length=12)
    role = models.CharField(max_length=64)  # the logical role
    role_name = models.CharField(max_length=64)  # the IAM role's name
    last_used = models.DateTimeField()
    read_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account_id", "role"], name="role_last_used_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.role} last used {self.last_used:%Y-%m-%d}"
