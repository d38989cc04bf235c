"""Time-bound privileged access (SPEC §2): requests, approval decisions and the grants they make.

State changes happen only in ``access_requests.services``; the constraints here make a double
grant or a double vote impossible even if a caller forgets to lock.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from federation.models import Account, GroupMapping, LogicalRole


class RequestState(models.TextChoices):
    PENDING = "pending", "pending"
    APPROVED = "approved", "approved"
    DENIED = "denied", "denied"
    CANCELLED = "cancelled", "cancelled"
    EXPIRED = "expired", "expired"


class GrantState(models.TextChoices):
    ACTIVE = "active", "active"
    EXPIRED = "expired", "expired"
    REVOKED = "revoked", "revoked"


class AccessRequest(models.Model):
    # Module-level so that the constraints in Meta can name the states too.
    State = RequestState

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    role = models.ForeignKey(LogicalRole, on_delete=models.PROTECT, related_name="+")
    mapping = models.ForeignKey(
        GroupMapping, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    justification = models.TextField()
    ticket = models.CharField(max_length=200, blank=True)
    duration = models.DurationField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    decide_by = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    # Set when no approver can be found, so admins see it instead of it waiting silently.
    unapprovable = models.BooleanField(default=False)
    # A break-glass activation (SPEC §4 Break-glass): approved at once by nobody, reviewed
    # afterwards by someone else (access_requests/services/break_glass.py).
    break_glass = models.BooleanField(default=False)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=RequestState.values),
                name="access_request_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(justification=""), name="access_request_justification_required"
            ),
            models.CheckConstraint(
                condition=Q(decide_by__gt=F("created_at")), name="access_request_deadline_after"
            ),
            # A second click on "request" must not queue a duplicate for the approvers.
            models.UniqueConstraint(
                fields=["requester", "account", "role"],
                condition=Q(state=RequestState.PENDING),
                name="one_pending_request_per_target",
            ),
            # Only a break-glass activation is reviewed, and never by the identity that used it
            # (the service also refuses the same person through another identity).
            models.CheckConstraint(
                condition=Q(reviewed_at__isnull=True) | Q(break_glass=True),
                name="access_request_review_only_break_glass",
            ),
            models.CheckConstraint(
                condition=Q(reviewed_by__isnull=True) | ~Q(reviewed_by=F("requester")),
                name="access_request_no_self_review",
            ),
            models.CheckConstraint(
                condition=Q(reviewed_by__isnull=True, reviewed_at__isnull=True)
                | Q(reviewed_by__isnull=False, reviewed_at__isnull=False),
                name="access_request_review_has_reviewer_and_time",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "decide_by"]),
            models.Index(fields=["requester", "-created_at"]),
            models.Index(
                fields=["created_at"],
                condition=Q(break_glass=True, reviewed_at__isnull=True),
                name="break_glass_unreviewed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"request #{self.pk} ({self.state})"

    @property
    def duration_minutes(self) -> int:
        return int(self.duration.total_seconds() // 60)


class Approval(models.Model):
    """One approver's decision on a request; an approver votes at most once per request."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "approve"
        DENY = "deny", "deny"

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="one_vote_per_approver"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} on request #{self.request_id}"


class Grant(models.Model):
    State = GrantState

    # One grant per request, enforced by the database: the last line against a double grant.
    request = models.OneToOneField(AccessRequest, on_delete=models.PROTECT, related_name="grant")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    role = models.ForeignKey(LogicalRole, on_delete=models.PROTECT, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # Why it was revoked, shown to its holder; "ended early by its holder" when they ended it.
    revoke_reason = models.CharField(max_length=500, blank=True)
    # Snapshots taken at approval, so a revocation denies exactly what the grant allowed even if
    # the mapping or the user's email changes afterwards (SECURITY.md §4).
    role_arn = models.CharField(max_length=2048, blank=True)
    source_identity = models.CharField(max_length=64, blank=True)
    # When IAM accepted the deny policy for a revoked grant; NULL on a revoked grant means the
    # policy is still owed, and the retry sweep keeps trying until it is set.
    revocation_applied_at = models.DateTimeField(null=True, blank=True)
    # Made by a break-glass activation (copied from its request so the resolver's one query
    # sees it): its sessions carry the tag BreakGlass=true.
    break_glass = models.BooleanField(default=False)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="grant_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(state__in=GrantState.values), name="grant_state_valid"
            ),
            models.CheckConstraint(
                condition=~Q(state=GrantState.REVOKED) | Q(revoked_at__isnull=False),
                name="grant_revoked_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "state", "ends_at"]),
            models.Index(
                fields=["state", "ends_at"],
                condition=Q(state=GrantState.ACTIVE),
                name="grant_active_ends_at_idx",
            ),
            models.Index(
                fields=["revoked_at"],
                condition=Q(state=GrantState.REVOKED, revocation_applied_at__isnull=True),
                name="grant_revocation_owed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"grant #{self.pk} ({self.state})"

    def is_active_at(self, now: datetime) -> bool:
        return self.state == self.State.ACTIVE and self.starts_at <= now < self.ends_at


class OutboxEffect(models.Model):
    """A side effect a committed change owes (issue #17): written in the change's transaction,
    published to the broker after commit or by the relay sweep, done once its task has run.

    ``task`` and ``args`` name a task in ``access_requests.tasks``; the task receives the row's
    id as ``effect_id`` and does nothing twice for it. A row is never deleted by the relay: an
    owed effect is visible (``done_at`` NULL) until it has happened.
    """

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    # Last time the relay handed it to the broker; NULL means never (the broker did not answer).
    queued_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(done_at__isnull=True),
                name="outbox_effect_owed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"effect #{self.pk} {self.task}{tuple(self.args)!r}"


class EffectDelivery(models.Model):
    """One recipient reached by one effect (a mail address, or the webhook), so a retry of the
    effect reaches only whoever has not had it."""

    effect = models.ForeignKey(OutboxEffect, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.CharField(max_length=320)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["effect", "recipient"], name="one_delivery_per_recipient"
            ),
        ]

    def __str__(self) -> str:
        return f"effect #{self.effect_id} delivered to {self.recipient}"
