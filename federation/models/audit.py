"""The append-only audit log and the head of its hash chain."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from federation.models.identity import User


class AuditEvent(models.Model):
    """Append-only, hash-chained record (SECURITY.md §6). Written only by audit.record_event()."""

    seq = models.PositiveBigIntegerField(unique=True)
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
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
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
