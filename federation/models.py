"""The core domain of SPEC §2: business units, accounts, roles, mappings, identities, audit.

Invariants live in the database (constraints) so that no code path, import or shell session can
break them; cross-field rules that need Python live in ``clean()``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

ACCOUNT_ID_RE = r"^[0-9]{12}$"
SLUG_RE = r"^[a-z0-9][a-z0-9-]{0,62}$"

# STS bounds for DurationSeconds: 15 minutes to 12 hours.
MIN_SESSION = timedelta(minutes=15)
MAX_SESSION = timedelta(hours=12)


class Environment(models.TextChoices):
    DEV = "dev", "dev"
    TEST = "test", "test"
    PROD = "prod", "prod"


# Portal, export and plan order: dev before test before prod.
ENV_ORDER = {Environment.DEV.value: 0, Environment.TEST.value: 1, Environment.PROD.value: 2}


class Access(models.TextChoices):
    STANDING = "standing", "standing"
    ELIGIBLE = "eligible", "eligible"


class BusinessUnit(models.Model):
    slug = models.CharField(max_length=63, unique=True, validators=[RegexValidator(SLUG_RE)])
    name = models.CharField(max_length=200)
    approver_groups = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Account(models.Model):
    account_id = models.CharField(
        max_length=12, unique=True, validators=[RegexValidator(ACCOUNT_ID_RE)]
    )
    alias = models.CharField(max_length=63, unique=True)
    business_unit = models.ForeignKey(
        BusinessUnit, on_delete=models.PROTECT, related_name="accounts"
    )
    environment = models.CharField(max_length=8, choices=Environment.choices)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    approver_groups = models.JSONField(default=list, blank=True)
    region = models.CharField(max_length=32, default="us-east-1")

    class Meta:
        ordering = ["business_unit__slug", "environment", "alias"]
        constraints = [
            models.CheckConstraint(
                condition=Q(account_id__regex=ACCOUNT_ID_RE), name="account_id_12_digits"
            ),
            models.CheckConstraint(
                condition=Q(environment__in=Environment.values), name="account_environment_valid"
            ),
            models.CheckConstraint(
                condition=Q(approvals_required__gte=1), name="account_approvals_at_least_one"
            ),
        ]
        indexes = [models.Index(fields=["business_unit", "environment"])]

    def __str__(self) -> str:
        return f"{self.alias} ({self.account_id})"

    @staticmethod
    def default_approvals(environment: str) -> int:
        """SPEC §2: prod needs two distinct approvers unless the account says otherwise."""
        return 2 if environment == Environment.PROD else 1

    def default_role_arn(self, role_name: str) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{role_name}"


class LogicalRole(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[RegexValidator(SLUG_RE)])
    description = models.CharField(max_length=500, blank=True)
    max_session = models.DurationField(default=timedelta(hours=1))
    privileged = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_session__gte=MIN_SESSION) & Q(max_session__lte=MAX_SESSION),
                name="role_max_session_within_sts_bounds",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AccountRole(models.Model):
    """The IAM role implementing a logical role in one account, when it differs from the default.

    Without a row, the role ARN is ``arn:aws:iam::<account>:role/<logical-role>`` and the
    maximum session is the logical role's.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="account_roles")
    role = models.ForeignKey(LogicalRole, on_delete=models.CASCADE, related_name="account_roles")
    role_arn = models.CharField(max_length=2048, blank=True)
    max_session = models.DurationField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "role"], name="account_role_unique"),
            models.CheckConstraint(
                condition=Q(max_session__isnull=True)
                | (Q(max_session__gte=MIN_SESSION) & Q(max_session__lte=MAX_SESSION)),
                name="account_role_max_session_within_sts_bounds",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account.alias}/{self.role.name}"


class GroupMapping(models.Model):
    """Directory group → logical role, scoped to a business unit (SPEC §2).

    ``environments`` and ``accounts`` narrow the scope; both empty means every account of the
    business unit. Both are stored sorted so equal scopes compare equal in the unique index.
    """

    group = models.CharField(max_length=256, validators=[MinLengthValidator(1)])
    role = models.ForeignKey(LogicalRole, on_delete=models.PROTECT, related_name="mappings")
    business_unit = models.ForeignKey(
        BusinessUnit, on_delete=models.PROTECT, related_name="mappings"
    )
    environments = models.JSONField(default=list, blank=True)
    accounts = models.JSONField(default=list, blank=True)
    access = models.CharField(max_length=8, choices=Access.choices)
    max_grant = models.DurationField(null=True, blank=True)
    approver_groups = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["business_unit__slug", "group", "role__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "role", "business_unit", "environments", "accounts"],
                name="group_mapping_unique_scope",
            ),
            models.CheckConstraint(
                condition=Q(access__in=Access.values), name="group_mapping_access_valid"
            ),
            models.CheckConstraint(
                condition=(Q(access=Access.STANDING) & Q(max_grant__isnull=True))
                | (Q(access=Access.ELIGIBLE) & Q(max_grant__gte=MIN_SESSION)),
                name="group_mapping_max_grant_only_for_eligible",
            ),
        ]
        # The entitlement lookup is `group = ANY(%s)`: this index is what keeps it off a scan.
        indexes = [models.Index(fields=["group"], name="group_mapping_group_idx")]

    def __str__(self) -> str:
        return f"{self.group} → {self.role_id} in {self.business_unit_id} ({self.access})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        bad_envs = [e for e in self.environments if e not in Environment.values]
        if bad_envs:
            errors["environments"] = f"unknown environment(s): {', '.join(map(str, bad_envs))}"
        if self.environments != sorted(set(self.environments)):
            errors["environments"] = "environments must be sorted and unique"
        if self.accounts != sorted(set(self.accounts)):
            errors["accounts"] = "accounts must be sorted and unique"
        if self.access == Access.STANDING and self.approver_groups:
            errors["approver_groups"] = "only eligible mappings carry approver groups"
        if errors:
            raise ValidationError(errors)


class MappingVersion(models.Model):
    """One applied state of the mapping tables: the whole document, so rollback is exact."""

    number = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=320)
    source = models.CharField(max_length=32)  # import, rollback, ui, seed
    reason = models.CharField(max_length=500, blank=True)
    document = models.JSONField()
    plan = models.JSONField(default=dict)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"v{self.number}"


class IdentityProvider(models.Model):
    class Protocol(models.TextChoices):
        SAML = "saml", "SAML 2.0"
        OIDC = "oidc", "OpenID Connect"

    slug = models.CharField(max_length=63, unique=True, validators=[RegexValidator(SLUG_RE)])
    protocol = models.CharField(max_length=8, choices=Protocol.choices)
    display_name = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    # SAML entity id or OIDC issuer.
    entity_id = models.CharField(max_length=1024)
    groups_attribute = models.CharField(max_length=256, default="groups")
    email_attribute = models.CharField(max_length=256, default="email")
    manager_attribute = models.CharField(max_length=256, blank=True)
    # Protocol-specific settings (certificates, endpoints, client id); never secrets in clear.
    config = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(protocol__in=["saml", "oidc"]), name="idp_protocol_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class User(AbstractUser):
    """A person, keyed on their IdP and its immutable subject, never on email."""

    idp = models.ForeignKey(
        IdentityProvider, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    subject = models.CharField(max_length=512, blank=True)
    directory_groups = models.JSONField(default=list, blank=True)
    manager = models.CharField(max_length=320, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idp", "subject"],
                condition=Q(idp__isnull=False),
                name="user_unique_idp_subject",
            ),
        ]

    @property
    def label(self) -> str:
        return self.email or self.username


class SignIn(models.Model):
    """A completed sign-in, with the groups the IdP asserted at that moment (for audit)."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="sign_ins")
    idp = models.ForeignKey(IdentityProvider, on_delete=models.PROTECT, related_name="sign_ins")
    at = models.DateTimeField(default=timezone.now)
    groups = models.JSONField(default=list)
    ip = models.GenericIPAddressField(null=True, blank=True)
    auth_context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["user", "-at"])]

    def __str__(self) -> str:
        return f"sign-in of {self.user_id} at {self.at:%Y-%m-%d %H:%M}"


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
    access = models.CharField(max_length=8)  # standing or grant
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


class MappingDraft(models.Model):
    """A proposed mapping change from the web editor: the whole document after the change and
    its plan. Nothing reaches the tables until the draft is applied (by a second admin when the
    change is sensitive) through ``federation.mappings.apply_document``."""

    class State(models.TextChoices):
        OPEN = "open", "open"
        APPLYING = "applying", "applying"
        APPLIED = "applied", "applied"
        REJECTED = "rejected", "rejected"
        DISCARDED = "discarded", "discarded"
        STALE = "stale", "stale"

    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16)  # edit, upload, rollback
    summary = models.CharField(max_length=300)
    reason = models.CharField(max_length=500)
    base_version = models.PositiveIntegerField()
    document = models.JSONField()
    plan = models.JSONField()
    needs_approval = models.BooleanField()
    sensitive_because = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    decided_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.CharField(max_length=500, blank=True)
    applied_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    state__in=["open", "applying", "applied", "rejected", "discarded", "stale"]
                ),
                name="mapping_draft_state_valid",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="mapping_draft_reason_required"),
            # No one approves their own sensitive change, whatever path writes the row.
            models.CheckConstraint(
                condition=Q(needs_approval=False)
                | ~Q(state="applied")
                | ~Q(decided_by=models.F("created_by")),
                name="mapping_draft_second_admin",
            ),
        ]
        indexes = [models.Index(fields=["state", "-created_at"])]

    def __str__(self) -> str:
        return f"draft #{self.pk} ({self.state})"


class SamlAuthnRequest(models.Model):
    """An AuthnRequest this service sent, so its response can be matched (SECURITY.md §1).

    Keyed by an opaque ``relay_state`` because the session cookie (SameSite=Lax) does not come
    back with the IdP's cross-site POST. Single use (``consumed_at``) and short-lived.
    """

    relay_state = models.CharField(max_length=64, unique=True)
    request_id = models.CharField(max_length=128, unique=True)
    idp = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="saml_requests"
    )
    next_path = models.CharField(max_length=2000, default="/")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"AuthnRequest {self.request_id} to {self.idp_id}"


class SamlConsumedAssertion(models.Model):
    """An accepted assertion id, kept until it expires so a replay fails on any instance."""

    idp = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="saml_consumed"
    )
    assertion_id = models.CharField(max_length=256)
    not_on_or_after = models.DateTimeField()
    consumed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idp", "assertion_id"], name="saml_assertion_used_once"
            ),
        ]
        indexes = [models.Index(fields=["not_on_or_after"])]

    def __str__(self) -> str:
        return f"assertion {self.assertion_id} from {self.idp_id}"
