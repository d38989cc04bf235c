"""The tables of SPEC §2: business units, accounts, roles, group mappings and their versions and
drafts.

Invariants live in the database (constraints) so that no code path, import or shell session can
break them; cross-field rules that need Python live in ``clean()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from federation.models.identity import User
from federation.models.vocabulary import (
    ACCOUNT_ID_RE,
    MAX_SESSION,
    MIN_GRANT,
    MIN_GRANT_MINUTES,
    MIN_SESSION,
    SLUG_RE,
    Access,
    Environment,
)


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
    # The control loop's first wave: its roles are changed before any other account's.
    canary = models.BooleanField(default=False)

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
    # {environment: [managed policy ARN, ...]} attached to the role's IAM roles (SPEC §3.3).
    policies = models.JSONField(default=dict, blank=True)
    # Step-up (SPEC §4): issued only after an MFA sign-in, and with ``max_auth_age`` only
    # within that time of the authentication.
    require_mfa = models.BooleanField(default=False)
    max_auth_age = models.DurationField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_session__gte=MIN_SESSION) & Q(max_session__lte=MAX_SESSION),
                name="role_max_session_within_sts_bounds",
            ),
            models.CheckConstraint(
                condition=Q(max_auth_age__isnull=True)
                | (Q(require_mfa=True) & Q(max_auth_age__gt=timedelta(0))),
                name="role_max_auth_age_needs_mfa",
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
    access = models.CharField(max_length=16, choices=Access.choices)
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
                | (
                    Q(access__in=[Access.ELIGIBLE, Access.BREAK_GLASS])
                    & Q(max_grant__gte=MIN_SESSION)
                ),
                name="group_mapping_max_grant_only_for_eligible",
            ),
            # A break-glass activation is approved by nobody: a row's approver groups would
            # mean nothing on it (the business unit's approvers review it afterwards).
            models.CheckConstraint(
                condition=~Q(access=Access.BREAK_GLASS) | Q(approver_groups=[]),
                name="group_mapping_break_glass_no_approvers",
            ),
        ]
        # The entitlement lookup is `group = ANY(%s)`: this index is what keeps it off a scan.
        indexes = [models.Index(fields=["group"], name="group_mapping_group_idx")]

    def __str__(self) -> str:
        # Names, never ids: this labels rows on pages, in drafts' titles and in refusals.
        return f"{self.group} → {self.role.name} in {self.business_unit.slug} ({self.access})"

    def clean(self) -> None:
        faults = group_mapping_faults(
            access=self.access,
            environments=self.environments,
            accounts=self.accounts,
            max_grant=self.max_grant,
            approver_groups=self.approver_groups,
        )
        if faults:
            raise ValidationError(faults)


MIN_GRANT_FAULT = (
    f"a grant lasts at least {MIN_GRANT_MINUTES} minutes (an AWS session lasts at least 15, and "
    "a grant must leave 15 minutes in which sessions can be started)"
)


def group_mapping_faults(
    *,
    access: str,
    environments: Sequence[str],
    accounts: Sequence[str],
    max_grant: timedelta | None,
    approver_groups: Sequence[str],
) -> dict[str, str]:
    """The cross-field rules of one group mapping row, as {field: fault}; empty when valid.

    The one home of these rules: ``GroupMapping.clean()``, the mapping file parser and the
    editor's row form all call it. An eligible row without ``max_grant`` is left to the caller
    (the file format fills in a default) and to the database constraint.
    """
    faults: dict[str, str] = {}
    bad_envs = [e for e in environments if e not in Environment.values]
    if bad_envs:
        faults["environments"] = f"unknown environment(s): {', '.join(map(str, bad_envs))}"
    elif list(environments) != sorted(set(environments)):
        faults["environments"] = "environments must be sorted and unique"
    if list(accounts) != sorted(set(accounts)):
        faults["accounts"] = "accounts must be sorted and unique"
    if access == Access.STANDING:
        if max_grant is not None:
            faults["max_grant"] = (
                "a maximum grant applies to eligible rows only (standing access never expires)"
            )
        if approver_groups:
            faults["approver_groups"] = (
                "approver groups apply to eligible rows only (standing access is not approved)"
            )
    else:
        if access == Access.BREAK_GLASS and approver_groups:
            faults["approver_groups"] = (
                "approver groups apply to eligible rows only (break-glass is reviewed afterwards "
                "by the business unit's approvers)"
            )
        if max_grant is not None and max_grant < MIN_GRANT:
            faults["max_grant"] = MIN_GRANT_FAULT
    return faults


class VersionSource(models.TextChoices):
    """Which path applied a mapping version (module level so Meta's constraint can name it)."""

    IMPORT = "import", "file import"
    ROLLBACK = "rollback", "rollback"
    SEED = "seed", "demo seed"
    UI = "ui", "mapping editor"


class MappingVersion(models.Model):
    """One applied state of the mapping tables: the whole document, so rollback is exact."""

    Source = VersionSource

    number = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=320)
    source = models.CharField(max_length=32, choices=Source.choices)
    reason = models.CharField(max_length=500, blank=True)
    document = models.JSONField()
    plan = models.JSONField(default=dict)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=VersionSource.values), name="mapping_version_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.number}"


class DraftKind(models.TextChoices):
    """How a draft was made: in the editor, or by a command (module level so Meta's
    constraint can name it)."""

    EDIT = "edit", "row edit"
    UPLOAD = "upload", "file upload"
    ROLLBACK = "rollback", "rollback"
    IMPORT = "import", "command-line import"


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

    Kind = DraftKind

    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=DraftKind.choices)
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
            models.CheckConstraint(
                condition=Q(kind__in=DraftKind.values), name="mapping_draft_kind_valid"
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
