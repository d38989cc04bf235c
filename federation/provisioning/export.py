"""``export_roles --format cloudformation``: one account's desired roles as a CloudFormation
template, for teams that deploy IAM through their own pipeline. The documents are exactly the
ones ``roles_apply`` writes, so a role deployed either way reads back in sync."""

from __future__ import annotations

import re
from typing import Any

from federation.mappings.state import get_current_document
from federation.provisioning import trust
from federation.provisioning.desired import DESCRIPTION, desired_roles
from federation.provisioning.plan import select_accounts


def _logical_id(name: str, taken: set[str]) -> str:
    # CloudFormation logical ids are alphanumeric.
    base = "Role" + "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))
    candidate, counter = base, 2
    while candidate in taken:
        candidate, counter = f"{base}{counter}", counter + 1
    taken.add(candidate)
    return candidate


def cloudformation_template(account: str) -> dict[str, Any]:
    """The template for one account (id or alias); raises UnknownAccount, ProvisioningInvalid."""
    version, document = get_current_document()
    [row] = select_accounts(document, [account])
    roles = desired_roles(document, version=version, broker_arn=trust.broker_principal_arn())
    taken: set[str] = set()
    resources: dict[str, Any] = {}
    for role in roles[row.account_id]:
        properties: dict[str, Any] = {
            "RoleName": role.name,
            "Path": role.path,
            "Description": DESCRIPTION,
            "AssumeRolePolicyDocument": role.trust_policy,
            "MaxSessionDuration": role.max_session_seconds,
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(role.tags.items())],
        }
        if role.policies:
            properties["ManagedPolicyArns"] = list(role.policies)
        resources[_logical_id(role.logical_role, taken)] = {
            "Type": "AWS::IAM::Role",
            "Properties": properties,
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"IAM roles of account {row.account_id} ({row.alias}) from fedaccess mapping "
            f"version {version}"
        ),
        "Resources": resources,
    }
