"""The mapping tables as they are now: loaded as a document, exported, and by version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max

from federation.mappings.document import (
    AccountRoleRow,
    AccountRow,
    BusinessUnitRow,
    MappingDocument,
    MappingKey,
    MappingRow,
    RoleRow,
    _dump_yaml,
    canonical_policies,
    make_document,
)
from federation.mappings.errors import VersionNotFound
from federation.mappings.parsing import document_from_data
from federation.models import (
    Account,
    AccountRole,
    BusinessUnit,
    GroupMapping,
    LogicalRole,
    MappingVersion,
)

# --- The current state ------------------------------------------------------------------------


@dataclass
class _Current:
    """The tables as a document, plus the primary keys the writer needs."""

    version: int
    document: MappingDocument
    bu_pk: dict[str, int] = field(default_factory=dict)
    account_pk: dict[str, int] = field(default_factory=dict)
    role_pk: dict[str, int] = field(default_factory=dict)
    account_role_pk: dict[tuple[str, str], int] = field(default_factory=dict)
    mapping_pk: dict[MappingKey, int] = field(default_factory=dict)
    # Rows that collapse onto another's key once normalised (only ever written outside this
    # module); the apply removes them.
    stray_mapping_pks: list[int] = field(default_factory=list)


def get_current_version() -> int:
    """The number of the latest mapping version, 0 when none was ever applied."""
    number = MappingVersion.objects.aggregate(latest=Max("number"))["latest"]
    return int(number or 0)


def _load_current() -> _Current:
    # The version is read first: if an apply commits while the tables are read, the plan's base
    # is older than what it saw and a later apply with that base is refused, never wrong.
    current = _Current(version=get_current_version(), document=MappingDocument())
    bus = []
    for pk, slug, name, approver_groups in BusinessUnit.objects.values_list(
        "pk", "slug", "name", "approver_groups"
    ):
        current.bu_pk[slug] = pk
        bus.append(BusinessUnitRow(slug, name, tuple(sorted(set(approver_groups or [])))))
    accounts = []
    for (
        pk,
        account_id,
        alias,
        bu,
        env,
        approvals,
        approver_groups,
        region,
        canary,
    ) in Account.objects.values_list(
        "pk",
        "account_id",
        "alias",
        "business_unit__slug",
        "environment",
        "approvals_required",
        "approver_groups",
        "region",
        "canary",
    ):
        current.account_pk[account_id] = pk
        accounts.append(
            AccountRow(
                account_id,
                alias,
                bu,
                env,
                approvals,
                tuple(sorted(set(approver_groups or []))),
                region,
                canary,
            )
        )
    roles = []
    for (
        pk,
        name,
        description,
        max_session,
        privileged,
        policies,
        require_mfa,
        max_auth_age,
    ) in LogicalRole.objects.values_list(
        "pk",
        "name",
        "description",
        "max_session",
        "privileged",
        "policies",
        "require_mfa",
        "max_auth_age",
    ):
        current.role_pk[name] = pk
        roles.append(
            RoleRow(
                name,
                description,
                privileged,
                max_session,
                canonical_policies(policies or {}),
                require_mfa=require_mfa,
                max_auth_age=max_auth_age,
            )
        )
    account_roles = []
    for pk, account_id, role, arn, override in AccountRole.objects.values_list(
        "pk", "account__account_id", "role__name", "role_arn", "max_session"
    ):
        current.account_role_pk[(account_id, role)] = pk
        account_roles.append(AccountRoleRow(account_id, role, arn, override))
    mappings = []
    for (
        pk,
        group,
        role,
        bu,
        envs,
        accts,
        access,
        max_grant,
        approver_groups,
    ) in GroupMapping.objects.order_by("pk").values_list(
        "pk",
        "group",
        "role__name",
        "business_unit__slug",
        "environments",
        "accounts",
        "access",
        "max_grant",
        "approver_groups",
    ):
        row = MappingRow(
            group,
            role,
            bu,
            access,
            tuple(sorted(set(envs or []))),
            tuple(sorted(set(accts or []))),
            max_grant,
            tuple(sorted(set(approver_groups or []))),
        )
        if row.key in current.mapping_pk:
            current.stray_mapping_pks.append(pk)
            continue
        current.mapping_pk[row.key] = pk
        mappings.append(row)
    current.document = make_document(bus, accounts, roles, account_roles, mappings)
    return current


def get_current_document() -> tuple[int, MappingDocument]:
    """The tables now as a document, with the mapping version they are at."""
    current = _load_current()
    return current.version, current.document


def export_document() -> dict[str, list[dict[str, Any]]]:
    """The tables as a canonical document dict (what MappingVersion.document stores)."""
    return _load_current().document.to_dict()


def dump_document_yaml(document: MappingDocument | None = None) -> str:
    """The document (default: the tables now) as canonical YAML; importing it back is a no-op."""
    if document is None:
        current = _load_current()
        document, version = current.document, current.version
        header = f"# Mapping file (SPEC §3.3), exported from mapping version {version}.\n"
    else:
        header = "# Mapping file (SPEC §3.3).\n"
    header += "# It is the complete desired state: rows missing from it are removed on import.\n"
    return header + _dump_yaml(document.to_dict())


def get_version_document(number: int) -> MappingDocument:
    """The document stored with mapping version ``number``; raises VersionNotFound."""
    version = MappingVersion.objects.filter(number=number).first()
    if version is None:
        latest = get_current_version()
        raise VersionNotFound(
            f"there is no mapping version {number} (versions run from 1 to {latest})"
            if latest
            else f"there is no mapping version {number} (no version was ever applied)"
        )
    return document_from_data(version.document)
