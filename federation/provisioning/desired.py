"""The desired state: one IAM role per (account, logical role) the mapping tables reach.

Derived from a ``MappingDocument`` (the tables now, or a draft), so a plan can show what a draft
would create. Every role is checked against IAM's limits here, before any call, because moto
checks none of them and AWS would reject the role only halfway through a rollout.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from federation.entitlements.scope import accounts_reached
from federation.mappings.document import AccountRow, MappingDocument
from federation.provisioning import trust
from federation.refusals import Refused

MANAGED_TAG = "fedaccess:managed"
MANAGED_VALUE = "true"
# Which mapping version last wrote the role: informational, never compared.
VERSION_TAG = "fedaccess:mapping-version"
DESCRIPTION = "Managed by fedaccess: changes made here are reported as drift and reverted."

# IAM: role names 1-64 of [\w+=,.@-]; paths / or /.../ of printable ASCII, at most 512.
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$", re.ASCII)
_PATH = re.compile(r"^/([\x21-\x7e]*/)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::([0-9]{12}):role(/.*/|/)([^/]+)$")
# IAM's MaxSessionDuration range. Below an hour the broker's own cap (issuance) is the bound.
IAM_SESSION_RANGE = (3600, 43200)


class ProvisioningInvalid(Refused):
    """The tables call for a role IAM would refuse; nothing was called."""

    code = "provisioning.invalid"
    status = 400

    def __init__(self, faults: Iterable[str]) -> None:
        self.faults = tuple(faults)
        super().__init__(
            "the tables call for roles IAM would refuse:\n"
            + "\n".join(f"  - {f}" for f in self.faults),
            detail={"faults": list(self.faults)},
        )


@dataclass(frozen=True)
class DesiredRole:
    account_id: str
    account_alias: str
    environment: str
    business_unit: str
    logical_role: str
    name: str
    path: str
    trust_policy: dict[str, Any]
    max_session_seconds: int
    policies: tuple[str, ...]  # sorted
    tags: dict[str, str]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role{self.path}{self.name}"

    @property
    def label(self) -> str:
        return f"role {self.logical_role} in account {self.account_id} ({self.account_alias})"

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "account_alias": self.account_alias,
            "environment": self.environment,
            "business_unit": self.business_unit,
            "logical_role": self.logical_role,
            "name": self.name,
            "path": self.path,
            "trust_policy": self.trust_policy,
            "max_session_seconds": self.max_session_seconds,
            "policies": list(self.policies),
            "tags": dict(self.tags),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DesiredRole:
        return cls(**{**data, "policies": tuple(data["policies"]), "tags": dict(data["tags"])})


def _split_arn(arn: str) -> tuple[str, str] | None:
    match = _ROLE_ARN.match(arn)
    return None if match is None else (match.group(2), match.group(3))


def desired_roles(
    document: MappingDocument, *, version: int, broker_arn: str
) -> dict[str, list[DesiredRole]]:
    """{account id: its desired roles, by name}, for every account of the document (accounts
    no row reaches map to an empty list, so their managed roles are planned for deletion).

    Raises ProvisioningInvalid naming every role IAM would refuse, and the mapping row at fault.
    """
    accounts_by_id = {a.account_id: a for a in document.accounts}
    accounts_of_unit: dict[str, list[AccountRow]] = defaultdict(list)
    for account in document.accounts:
        accounts_of_unit[account.business_unit].append(account)
    roles = {r.name: r for r in document.roles}
    overrides = {r.key: r for r in document.account_roles}
    reached: set[tuple[str, str]] = set()
    for row in document.mappings:
        for account in accounts_reached(
            row.business_unit,
            row.environments,
            row.accounts,
            accounts_by_id=accounts_by_id,
            accounts_of_unit=accounts_of_unit,
        ):
            reached.add((account.account_id, row.role))

    faults: list[str] = []
    result: dict[str, list[DesiredRole]] = {a.account_id: [] for a in document.accounts}
    for account_id, role_name in sorted(reached):
        account, role = accounts_by_id[account_id], roles[role_name]
        override = overrides.get((account_id, role_name))
        arn = (
            override.role_arn if override else ""
        ) or f"arn:aws:iam::{account_id}:role/{role_name}"
        max_session = (
            override.max_session if override and override.max_session else role.max_session
        )
        where = f"role {role_name} in account {account_id} ({account.alias})"
        parts = _split_arn(arn)
        if parts is None:
            faults.append(f"{where}: {arn!r} is not an IAM role ARN")
            continue
        path, name = parts
        if not _ROLE_NAME.match(name):
            faults.append(
                f"{where}: role name {name!r} is not 1-64 characters of letters, digits and "
                "+=,.@_- (IAM's rule)"
            )
        if len(path) > 512 or not _PATH.match(path):
            faults.append(f"{where}: role path {path!r} is not / or /…/ within 512 characters")
        seconds = int(max_session.total_seconds())
        if not 900 <= seconds <= IAM_SESSION_RANGE[1]:
            faults.append(f"{where}: session length {seconds}s is outside 900-43200 seconds")
        policies = tuple(
            sorted(
                {
                    p.replace("${AccountId}", account_id)
                    for p in role.policies_for(account.environment)
                }
            )
        )
        limit = settings.ROLE_MANAGED_POLICIES_MAX
        if len(policies) > limit:
            faults.append(
                f"{where}: roles[{role_name}].policies.{account.environment} lists "
                f"{len(policies)} managed policies, IAM attaches at most {limit}"
            )
        document_ = trust.trust_policy(
            broker_arn, account.business_unit, require_mfa=role.require_mfa
        )
        size, size_limit = trust.policy_size(document_), settings.ROLE_TRUST_POLICY_MAX_CHARS
        if size > size_limit:
            faults.append(
                f"{where}: the trust policy would be {size} characters, over IAM's {size_limit}"
            )
        tags = {MANAGED_TAG: MANAGED_VALUE, VERSION_TAG: str(version)}
        result[account_id].append(
            DesiredRole(
                account_id=account_id,
                account_alias=account.alias,
                environment=account.environment,
                business_unit=account.business_unit,
                logical_role=role_name,
                name=name,
                path=path,
                trust_policy=document_,
                # IAM's floor is an hour; issuance caps each session at the role's own maximum.
                max_session_seconds=max(seconds, IAM_SESSION_RANGE[0]),
                policies=policies,
                tags=tags,
            )
        )
    names: dict[tuple[str, str], str] = {}
    for account_id, wanted in result.items():
        for want in wanted:
            # Role names are unique per account whatever the path (and case-insensitive).
            other = names.setdefault((account_id, want.name.lower()), want.logical_role)
            if other != want.logical_role:
                faults.append(
                    f"{want.label}: IAM role name {want.name!r} is also wanted for role {other}"
                )
    if faults:
        raise ProvisioningInvalid(faults)
    return result
