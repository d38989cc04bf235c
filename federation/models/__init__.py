"""The core domain of SPEC §2, one module per subject; every model is importable from here."""

from federation.models.audit import AuditChainHead, AuditEvent
from federation.models.catalog import (
    Account,
    AccountRole,
    BusinessUnit,
    DraftKind,
    GroupMapping,
    LogicalRole,
    MappingDraft,
    MappingVersion,
    VersionSource,
    group_mapping_faults,
)
from federation.models.identity import (
    IdentityProvider,
    Person,
    SamlAuthnRequest,
    SamlConsumedAssertion,
    SignIn,
    User,
)
from federation.models.issuance import ApiToken, DeviceLogin, SessionIssuance
from federation.models.provisioning import DriftFinding, Rollout, RolloutStep
from federation.models.vocabulary import (
    ACCOUNT_ID_RE,
    ENV_ORDER,
    MAX_SESSION,
    MIN_GRANT,
    MIN_GRANT_MINUTES,
    MIN_SESSION,
    SLUG_RE,
    Access,
    EntitlementAccess,
    Environment,
)

__all__ = [
    "ACCOUNT_ID_RE",
    "ENV_ORDER",
    "MAX_SESSION",
    "MIN_GRANT",
    "MIN_GRANT_MINUTES",
    "MIN_SESSION",
    "SLUG_RE",
    "Access",
    "Account",
    "AccountRole",
    "ApiToken",
    "AuditChainHead",
    "AuditEvent",
    "BusinessUnit",
    "DeviceLogin",
    "DraftKind",
    "DriftFinding",
    "EntitlementAccess",
    "Environment",
    "GroupMapping",
    "IdentityProvider",
    "LogicalRole",
    "MappingDraft",
    "MappingVersion",
    "Person",
    "Rollout",
    "RolloutStep",
    "SamlAuthnRequest",
    "SamlConsumedAssertion",
    "SessionIssuance",
    "SignIn",
    "User",
    "VersionSource",
    "group_mapping_faults",
]
