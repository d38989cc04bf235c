"""IAM role reads and writes for the control loop (docs/control-loop.md): the roles an account
has, and the create / update / tag / delete calls that converge them. Decides nothing: the plan
(federation/provisioning/) says what to change. Per-person deny policies live in ``iam.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from federation.aws import sts
from federation.aws.iam import (
    _PROVISIONING_CONFIG,
    PROVISIONING_SESSION_NAME,
    IamCallFailed,
    _account_client,
    _cache_key,
    _client_lock,
    _clients,
)

# Reads are two paginated list calls per account (ListRoles: trust policy, session length, path;
# GetAccountAuthorizationDetails: attached and inline policies, tags, last use), never one call
# per role. Writes name the account and role in every failure. Throttling is retried by botocore's
# standard retry mode (exponential backoff with jitter), with more attempts than revocation uses:
# a rollout touches many roles in a burst.


@dataclass(frozen=True)
class IamRole:
    """One IAM role as the account reports it."""

    name: str
    path: str
    arn: str
    role_id: str
    trust_policy: dict[str, Any]
    max_session_seconds: int
    attached_policies: tuple[str, ...]
    inline_policies: tuple[str, ...]
    tags: dict[str, str]
    last_used: datetime | None


def _provisioning_client(account_id: str) -> Any:
    management_role = settings.IAM_MANAGEMENT_ROLE_NAME
    if management_role:
        return _account_client(account_id, PROVISIONING_SESSION_NAME)
    key = _cache_key("provisioning")
    with _client_lock:
        client = _clients.get(key)
        if client is None:
            client = boto3.session.Session().client(
                "iam", region_name=sts.home_region(), config=_PROVISIONING_CONFIG
            )
            _clients[key] = client
        return client


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # the API returns documents URL-encoded; boto3 usually decodes
        value = json.loads(unquote(value))
    return dict(value or {})


def read_account_roles(account_id: str) -> list[IamRole]:
    """Every role in the account (all paths), read through the management role."""
    client = _provisioning_client(account_id)
    listed: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}
    try:
        for page in client.get_paginator("list_roles").paginate():
            listed.update({role["RoleName"]: role for role in page.get("Roles", [])})
        paginator = client.get_paginator("get_account_authorization_details")
        for page in paginator.paginate(Filter=["Role"]):
            details.update({role["RoleName"]: role for role in page.get("RoleDetailList", [])})
    except (ClientError, BotoCoreError) as exc:
        raise IamCallFailed(f"reading the roles of account {account_id} failed: {exc}") from exc
    roles = []
    for name, role in sorted(listed.items()):
        detail = details.get(name, {})
        last_used = (detail.get("RoleLastUsed") or {}).get("LastUsedDate")
        roles.append(
            IamRole(
                name=name,
                path=str(role.get("Path", "/")),
                arn=str(role["Arn"]),
                role_id=str(role.get("RoleId", "")),
                trust_policy=_document(role.get("AssumeRolePolicyDocument")),
                max_session_seconds=int(role.get("MaxSessionDuration") or 3600),
                attached_policies=tuple(
                    sorted(p["PolicyArn"] for p in detail.get("AttachedManagedPolicies", []))
                ),
                inline_policies=tuple(
                    sorted(p["PolicyName"] for p in detail.get("RolePolicyList", []))
                ),
                tags={t["Key"]: t["Value"] for t in detail.get("Tags", [])},
                last_used=last_used,
            )
        )
    return roles


def _role_call(account_id: str, role_name: str, what: str, operation: str, **params: Any) -> None:
    client = _provisioning_client(account_id)
    try:
        getattr(client, operation)(**params)
    except (ClientError, BotoCoreError) as exc:
        raise IamCallFailed(
            f"{what} role {role_name!r} in account {account_id} failed: {exc}"
        ) from exc


def _policy_text(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def create_role(
    account_id: str,
    *,
    name: str,
    path: str,
    trust_policy: dict[str, Any],
    max_session_seconds: int,
    tags: dict[str, str],
    description: str,
) -> None:
    """CreateRole, with its tags in the same call (so no untagged moment exists)."""
    _role_call(
        account_id,
        name,
        "creating",
        "create_role",
        RoleName=name,
        Path=path,
        AssumeRolePolicyDocument=_policy_text(trust_policy),
        MaxSessionDuration=max_session_seconds,
        Description=description,
        Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())],
    )


def update_trust_policy(account_id: str, name: str, trust_policy: dict[str, Any]) -> None:
    _role_call(
        account_id,
        name,
        "updating the trust policy of",
        "update_assume_role_policy",
        RoleName=name,
        PolicyDocument=_policy_text(trust_policy),
    )


def update_max_session(account_id: str, name: str, seconds: int) -> None:
    _role_call(
        account_id,
        name,
        "setting the session length of",
        "update_role",
        RoleName=name,
        MaxSessionDuration=seconds,
    )


def attach_policy(account_id: str, name: str, policy_arn: str) -> None:
    _role_call(
        account_id,
        name,
        f"attaching {policy_arn} to",
        "attach_role_policy",
        RoleName=name,
        PolicyArn=policy_arn,
    )


def detach_policy(account_id: str, name: str, policy_arn: str) -> None:
    _role_call(
        account_id,
        name,
        f"detaching {policy_arn} from",
        "detach_role_policy",
        RoleName=name,
        PolicyArn=policy_arn,
    )


def tag_role(account_id: str, name: str, tags: dict[str, str]) -> None:
    _role_call(
        account_id,
        name,
        "tagging",
        "tag_role",
        RoleName=name,
        Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())],
    )


def delete_role(account_id: str, role: IamRole) -> None:
    """Detach its managed policies, delete its inline policies, then the role (IAM refuses to
    delete a role that still has either). The caller has checked the role is ours."""
    for policy_arn in role.attached_policies:
        detach_policy(account_id, role.name, policy_arn)
    for policy_name in role.inline_policies:
        _role_call(
            account_id,
            role.name,
            f"deleting inline policy {policy_name} of",
            "delete_role_policy",
            RoleName=role.name,
            PolicyName=policy_name,
        )
    _role_call(account_id, role.name, "deleting", "delete_role", RoleName=role.name)
