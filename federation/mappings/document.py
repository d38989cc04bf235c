"""The mapping document (SPEC §3.3): its rows in canonical order, and its YAML form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from federation.models import ENV_ORDER, group_mapping_faults

DEFAULT_REGION = "us-east-1"
DEFAULT_SESSION_MINUTES = 60
DEFAULT_MAX_GRANT_MINUTES = 60


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class BusinessUnitRow:
    slug: str
    name: str
    approver_groups: tuple[str, ...] = ()

    kind = "business_unit"

    @property
    def key(self) -> str:
        return self.slug

    @property
    def label(self) -> str:
        return f"business unit {self.slug}"

    def to_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "name": self.name, "approver_groups": list(self.approver_groups)}


@dataclass(frozen=True, slots=True)
class AccountRow:
    account_id: str
    alias: str
    business_unit: str
    environment: str
    approvals_required: int
    approver_groups: tuple[str, ...] = ()
    region: str = DEFAULT_REGION
    canary: bool = False  # the control loop's first wave (docs/control-loop.md)

    kind = "account"

    @property
    def key(self) -> str:
        return self.account_id

    @property
    def label(self) -> str:
        return f"account {self.account_id} ({self.alias})"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.account_id,
            "alias": self.alias,
            "business_unit": self.business_unit,
            "environment": self.environment,
            "approvals_required": self.approvals_required,
        }
        if self.approver_groups:
            item["approver_groups"] = list(self.approver_groups)
        item["region"] = self.region
        if self.canary:
            item["canary"] = True
        return item


@dataclass(frozen=True, slots=True)
class RoleRow:
    name: str
    description: str = ""
    privileged: bool = False
    max_session: timedelta = timedelta(minutes=DEFAULT_SESSION_MINUTES)
    # Managed policy ARNs attached to the IAM role, per environment: ((env, (arn, ...)), ...),
    # environments in ENV_ORDER, ARNs in file order (the control loop, SPEC §3.3).
    policies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Step-up (SPEC §4): issued only after MFA, and within max_auth_age of it when set.
    require_mfa: bool = False
    max_auth_age: timedelta | None = None

    kind = "role"

    @property
    def key(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return f"role {self.name}"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name}
        if self.description:
            item["description"] = self.description
        item["privileged"] = self.privileged
        item["max_session_minutes"] = _minutes(self.max_session)
        if self.require_mfa:
            item["require_mfa"] = True
        if self.max_auth_age is not None:
            item["max_auth_age_minutes"] = _minutes(self.max_auth_age)
        if self.policies:
            item["policies"] = {env: list(arns) for env, arns in self.policies}
        return item

    def policies_for(self, environment: str) -> tuple[str, ...]:
        return dict(self.policies).get(environment, ())


def canonical_policies(
    policies: Mapping[Any, Iterable[str]],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``{env: [arn, ...]}`` as RoleRow stores it: environments in ENV_ORDER, empty lists
    dropped."""
    return tuple(
        (env, tuple(arns))
        for env, arns in sorted(
            ((env, list(arns)) for env, arns in policies.items()),
            key=lambda item: ENV_ORDER.get(item[0], 9),
        )
        if arns
    )


@dataclass(frozen=True, slots=True)
class AccountRoleRow:
    account_id: str
    role: str
    role_arn: str = ""  # empty: the default arn:aws:iam::<account>:role/<role>
    max_session: timedelta | None = None  # None: the logical role's

    kind = "account_role"

    @property
    def key(self) -> tuple[str, str]:
        return (self.account_id, self.role)

    @property
    def label(self) -> str:
        return f"account role {self.role} in {self.account_id}"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"account": self.account_id, "role": self.role}
        if self.role_arn:
            item["role_arn"] = self.role_arn
        if self.max_session is not None:
            item["max_session_minutes"] = _minutes(self.max_session)
        return item


MappingKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class MappingRow:
    group: str
    role: str
    business_unit: str
    access: str
    environments: tuple[str, ...] = ()  # sorted; empty = every environment
    accounts: tuple[str, ...] = ()  # sorted account ids; empty = every account of the BU
    max_grant: timedelta | None = None  # eligible and break-glass rows only
    approver_groups: tuple[str, ...] = ()  # eligible rows only

    kind = "mapping"

    @property
    def key(self) -> MappingKey:
        return (self.group, self.role, self.business_unit, self.environments, self.accounts)

    @property
    def label(self) -> str:
        scope = []
        if self.environments:
            scope.append(f"environments {', '.join(self.environments)}")
        if self.accounts:
            scope.append(f"accounts {', '.join(self.accounts)}")
        where = f" [{'; '.join(scope)}]" if scope else ""
        return f"mapping {self.group} -> {self.role} in {self.business_unit}{where}"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "group": self.group,
            "role": self.role,
            "business_unit": self.business_unit,
        }
        if self.environments:
            item["environments"] = list(self.environments)
        if self.accounts:
            item["accounts"] = list(self.accounts)
        item["access"] = self.access
        if self.max_grant is not None:
            item["max_grant_minutes"] = _minutes(self.max_grant)
        if self.approver_groups:
            item["approver_groups"] = list(self.approver_groups)
        return item


def row_faults(row: MappingRow) -> dict[str, str]:
    """The row's faults by ``GroupMapping``'s cross-field rules, keyed by model field."""
    return group_mapping_faults(
        access=row.access,
        environments=row.environments,
        accounts=row.accounts,
        max_grant=row.max_grant,
        approver_groups=row.approver_groups,
    )


@dataclass(frozen=True)
class MappingDocument:
    """A validated, canonical (sorted) mapping document; build it with ``make_document()``."""

    business_units: tuple[BusinessUnitRow, ...] = ()
    accounts: tuple[AccountRow, ...] = ()
    roles: tuple[RoleRow, ...] = ()
    account_roles: tuple[AccountRoleRow, ...] = ()
    mappings: tuple[MappingRow, ...] = ()

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The canonical JSON-able form: what export writes and MappingVersion.document stores."""
        return {
            "business_units": [row.to_dict() for row in self.business_units],
            "accounts": [row.to_dict() for row in self.accounts],
            "roles": [row.to_dict() for row in self.roles],
            "account_roles": [row.to_dict() for row in self.account_roles],
            "mappings": [row.to_dict() for row in self.mappings],
        }


def make_document(
    business_units: Iterable[BusinessUnitRow] = (),
    accounts: Iterable[AccountRow] = (),
    roles: Iterable[RoleRow] = (),
    account_roles: Iterable[AccountRoleRow] = (),
    mappings: Iterable[MappingRow] = (),
) -> MappingDocument:
    """Rows in canonical order, so equal states give equal documents and stable exports."""
    return MappingDocument(
        business_units=tuple(sorted(business_units, key=lambda r: r.slug)),
        accounts=tuple(
            sorted(
                accounts,
                key=lambda r: (r.business_unit, ENV_ORDER.get(r.environment, 9), r.alias),
            )
        ),
        roles=tuple(sorted(roles, key=lambda r: r.name)),
        account_roles=tuple(sorted(account_roles, key=lambda r: r.key)),
        mappings=tuple(
            sorted(
                mappings,
                key=lambda r: (r.business_unit, r.group, r.role, r.environments, r.accounts),
            )
        ),
    )


def _dump_yaml(data: Any) -> str:
    class FlowItem(dict[str, Any]):
        pass

    dumper_base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(dumper_base):  # type: ignore[valid-type,misc]
        pass

    def flow(dumper: yaml.SafeDumper, item: FlowItem) -> yaml.Node:
        return dumper.represent_mapping("tag:yaml.org,2002:map", item.items(), flow_style=True)

    Dumper.add_representer(FlowItem, flow)
    shaped = {section: [FlowItem(item) for item in rows] for section, rows in data.items()}
    dumped: str = yaml.dump(
        shaped,
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
    return dumped
