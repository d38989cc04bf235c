"""Directory sync over SCIM 2.0 (SPEC §3.4 /scim/v2/, §4 Directory sync and leavers).

An IdP pushes its users and groups here; a SCIM user *is* one of our sign-in identities (a
``User`` keyed on the IdP and its subject, the subject being the SCIM ``userName`` or
``externalId`` as registered), so a person's groups can come from either source: the most
recent statement wins and both stay in the audit log. ``federation.directory`` is the service
that writes these rows.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from federation.models.identity import IdentityProvider, User


class ScimSubject(models.TextChoices):
    """Which SCIM attribute is the IdP's sign-in subject (chosen when SCIM is set up)."""

    USER_NAME = "userName", "userName"
    EXTERNAL_ID = "externalId", "externalId"


class LeaverKind(models.TextChoices):
    DEACTIVATED = "deactivated", "deactivated"
    DELETED = "deleted", "deleted"
    MOVED = "moved", "lost groups"


class ScimToken(models.Model):
    """A bearer token one IdP's provisioning client presents; only its SHA-256 is stored.

    Rotating sets ``expires_at`` on the older tokens (a grace period), so the IdP can be
    switched to the new token without a gap.
    """

    idp = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="scim_tokens")
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… for {self.idp_id}"


class DirectoryUser(models.Model):
    """A SCIM ``User`` resource, one-to-one with the sign-in identity it provisions."""

    idp = models.ForeignKey(IdentityProvider, on_delete=models.PROTECT, related_name="scim_users")
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="directory_entry")
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True)
    user_name = models.CharField(max_length=512)
    external_id = models.CharField(max_length=512, blank=True)
    # NULL: the IdP removed the attribute (no statement; the identity stays as it was).
    active = models.BooleanField(null=True, default=True)
    # The rest of the resource as the IdP sent it (name, emails, ...), minus meta and groups.
    attributes = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["user_name"]
        constraints = [
            # userName is case-insensitive (RFC 7643 §4.1.1).
            models.UniqueConstraint("idp", Lower("user_name"), name="scim_user_unique_user_name"),
        ]
        indexes = [models.Index(fields=["idp", "external_id"])]

    def __str__(self) -> str:
        return f"SCIM user {self.user_name} at {self.idp_id}"


class DirectoryGroup(models.Model):
    """A SCIM ``Group`` resource; its ``display_name`` is the directory group name mappings use."""

    idp = models.ForeignKey(IdentityProvider, on_delete=models.PROTECT, related_name="scim_groups")
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True)
    display_name = models.CharField(max_length=256)
    external_id = models.CharField(max_length=512, blank=True)
    members = models.ManyToManyField(
        DirectoryUser, through="DirectoryMembership", related_name="groups"
    )
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["idp", "display_name"], name="scim_group_unique_display_name"
            ),
        ]

    def __str__(self) -> str:
        return f"SCIM group {self.display_name} at {self.idp_id}"


class DirectoryMembership(models.Model):
    group = models.ForeignKey(DirectoryGroup, on_delete=models.CASCADE)
    member = models.ForeignKey(DirectoryUser, on_delete=models.CASCADE)
    display = models.CharField(max_length=256, blank=True)  # as the IdP sent it, if it did

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "member"], name="scim_membership_once"),
        ]
        indexes = [models.Index(fields=["member"])]

    def __str__(self) -> str:
        return f"member {self.member_id} of group {self.group_id}"


class ScimRequest(models.Model):
    """One SCIM call: what the admin page counts, and what every effect's audit event names."""

    idp = models.ForeignKey(
        IdentityProvider, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    at = models.DateTimeField()
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    scim_type = models.CharField(max_length=32, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["idp", "-at"])]

    def __str__(self) -> str:
        return f"SCIM {self.method} {self.path} at {self.at:%Y-%m-%d %H:%M:%S}"


class Leaver(models.Model):
    """A person who lost access through SCIM: deactivated, deleted, or moved out of groups.

    Counts of what was ended in the SCIM request's transaction; the IAM denies it owes are
    ``IdentityDeny`` rows, applied after commit and retried until IAM accepts them.
    """

    idp = models.ForeignKey(IdentityProvider, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="leaver_records")
    scim_request = models.ForeignKey(
        ScimRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="leavers"
    )
    kind = models.CharField(max_length=12, choices=LeaverKind.choices)
    at = models.DateTimeField()
    lost = models.JSONField(default=list, blank=True)  # "account/role" no longer reachable
    sessions_ended = models.PositiveIntegerField(default=0)
    tokens_revoked = models.PositiveIntegerField(default=0)
    requests_cancelled = models.PositiveIntegerField(default=0)
    grants_revoked = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["deactivated", "deleted", "moved"]),
                name="leaver_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.user_id} at {self.at:%Y-%m-%d %H:%M}"


class IdentityDeny(models.Model):
    """An IAM deny one identity's earlier sessions on one role are owed (the per-person
    revocation policy of ``federation.aws.iam``); ``applied_at`` stays NULL until IAM accepts it.
    """

    leaver = models.ForeignKey(Leaver, on_delete=models.PROTECT, related_name="denies")
    role_arn = models.CharField(max_length=2048)
    account_id = models.CharField(max_length=12)
    source_identity = models.CharField(max_length=64)
    issued_before = models.DateTimeField()
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(applied_at__isnull=True), name="deny_owed"
            )
        ]

    def __str__(self) -> str:
        return f"deny {self.source_identity} on {self.role_arn} before {self.issued_before}"


class PortalSession(models.Model):
    """A portal session key started at sign-in, so a leaver's sessions can all be ended."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="portal_sessions")
    session_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"portal session of {self.user_id}"
