"""What was handed out: AWS role sessions and personal API tokens."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from federation.models.catalog import Account, LogicalRole
from federation.models.identity import User
from federation.models.vocabulary import MAX_SESSION, MIN_SESSION, EntitlementAccess

# A session is handed out only for access usable now: a standing mapping or an active grant.
ISSUED_ACCESS = (EntitlementAccess.STANDING, EntitlementAccess.GRANT)


class SessionIssuance(models.Model):
    """One AWS role session handed out: who, where, for how long, under which grant.

    Written only by ``federation.issuance.service``. Never holds credentials: the session name and
    SourceIdentity are what CloudTrail shows, and they lead back to this row.
    """

    class Kind(models.TextChoices):
        CONSOLE = "console", "console"
        CLI = "cli", "CLI credentials"

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="issuances")
    # Keyed on the AWS account id and the role name, as CloudTrail and the audit log name them;
    # issuance then writes the row without first looking the keys up.
    account = models.ForeignKey(
        Account, to_field="account_id", on_delete=models.PROTECT, related_name="issuances"
    )
    role = models.ForeignKey(
        LogicalRole, to_field="name", on_delete=models.PROTECT, related_name="issuances"
    )
    grant = models.ForeignKey(
        "access_requests.Grant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="issuances",
    )
    api_token = models.ForeignKey(
        "ApiToken", null=True, blank=True, on_delete=models.PROTECT, related_name="issuances"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    access = models.CharField(
        max_length=8, choices=[(access.value, access.label) for access in ISSUED_ACCESS]
    )
    role_arn = models.CharField(max_length=2048)
    session_name = models.CharField(max_length=64)
    source_identity = models.CharField(max_length=64)
    region = models.CharField(max_length=32)
    endpoint = models.CharField(max_length=500)
    aws_request_id = models.CharField(max_length=128, blank=True)
    duration = models.DurationField()
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["console", "cli"]), name="issuance_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(access__in=[access.value for access in ISSUED_ACCESS]),
                name="issuance_access_usable",
            ),
            models.CheckConstraint(
                condition=Q(duration__gte=MIN_SESSION) & Q(duration__lte=MAX_SESSION),
                name="issuance_duration_within_sts_bounds",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("issued_at")),
                name="issuance_expires_after_issue",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-issued_at"]),
            models.Index(fields=["account", "role", "-issued_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.session_name} as {self.role_arn} until {self.expires_at:%Y-%m-%d %H:%M}"


class ApiToken(models.Model):
    """A personal token for the API and the fedaccess CLI: hashed at rest, expiring, revocable.

    Only the SHA-256 of the token is stored; ``prefix`` (the first characters) lets a person
    tell their tokens apart without the server keeping anything usable.
    """

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("created_at")),
                name="api_token_expires_after_creation",
            ),
        ]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    def is_usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


class DeviceLoginState(models.TextChoices):
    PENDING = "pending", "waiting for approval"
    APPROVED = "approved", "approved"
    DENIED = "denied", "denied"
    REDEEMED = "redeemed", "token handed out"


class DeviceLogin(models.Model):
    """A ``fedaccess login`` in progress (device-authorization style, RFC 8628's shape): the CLI
    holds the device code (only its SHA-256 is stored), the person confirms the short user code
    on the portal after signing in, and the CLI then receives one API token of that identity.
    """

    State = DeviceLoginState

    device_digest = models.CharField(max_length=64, unique=True)
    user_code = models.CharField(max_length=9)
    client = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="device_logins"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    token = models.OneToOneField(
        ApiToken, null=True, blank=True, on_delete=models.PROTECT, related_name="device_login"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=DeviceLoginState.values), name="device_login_state_valid"
            ),
            # Approved or redeemed means someone approved it.
            models.CheckConstraint(
                condition=Q(state__in=["pending", "denied"]) | Q(user__isnull=False),
                name="device_login_approved_by_someone",
            ),
            # One live login per user code, so a code names exactly one CLI.
            models.UniqueConstraint(
                fields=["user_code"],
                condition=Q(state="pending"),
                name="device_login_one_pending_per_code",
            ),
        ]

    def __str__(self) -> str:
        return f"device login {self.user_code} ({self.state})"
