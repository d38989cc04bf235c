"""The append-only audit log and the head of its hash chain.

An event is inserted unsequenced (``seq``, ``prev_hash``, ``hash`` and ``sequenced_at`` NULL) by
the transaction of the change it describes; the sequencer (federation/audit/sequencer.py) later
gives it its place in the chain. The database trigger allows that one update and nothing else.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from federation.models.identity import User


class AuditEvent(models.Model):
    """Append-only, hash-chained record (SECURITY.md §6). Written only by audit.record_event();
    sequenced (seq and hashes filled in once) only by audit.sequencer."""

    seq = models.PositiveBigIntegerField(unique=True, null=True, blank=True)
    at = models.DateTimeField()
    event_type = models.CharField(max_length=64)
    actor = models.CharField(max_length=320)
    actor_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    account_id = models.CharField(max_length=12, blank=True)
    target = models.CharField(max_length=500, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict)
    # NULL until sequenced: "" would be a value a forger could hash; NULL is "no place yet".
    prev_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # Outside the hash: when the row was written and when it got its place (the sequencing lag).
    recorded_at = models.DateTimeField(db_default=Now(), editable=False)
    sequenced_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        seq__isnull=True,
                        prev_hash__isnull=True,
                        hash__isnull=True,
                        sequenced_at__isnull=True,
                    )
                    | Q(
                        seq__isnull=False,
                        prev_hash__isnull=False,
                        hash__isnull=False,
                        sequenced_at__isnull=False,
                    )
                ),
                name="audit_sequenced_all_or_nothing",
            ),
        ]
        indexes = [
            # The sequencer's and the pending section's scan: only unsequenced rows, by id.
            models.Index(fields=["id"], condition=Q(seq__isnull=True), name="audit_pending"),
            models.Index(fields=["event_type", "-seq"]),
            models.Index(fields=["actor", "-seq"]),
            models.Index(fields=["account_id", "-seq"]),
            models.Index(fields=["at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} by {self.actor}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)


class AuditChainHead(models.Model):
    """Single row holding the chain's tip; appends lock it so writers never fork the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_head_singleton")]

    def __str__(self) -> str:
        return f"audit head #{self.seq}"
