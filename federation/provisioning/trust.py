"""The trust policy every provisioned role carries, and the broker principal it trusts.

SECURITY.md §7: the only principal is the broker; a session must carry a SourceIdentity and the
session tags the broker sets (``federation.issuance.service.session_tags``), and may carry no
other tag keys. Defence in depth: AWS itself then refuses a session tagged for another business
unit. ``aws:PrincipalArn`` is repeated as a condition because IAM stores a role principal as the
role's unique id: if the broker role is deleted and recreated, the principal reads back as
``AROA...`` and matches nobody, while the condition names the ARN and would still match.

moto enforces none of these conditions (nor IAM's size limits): tests check the documents.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from federation.aws import sts
from federation.issuance.service import (
    TAG_ACCESS_REQUEST,
    TAG_BREAK_GLASS,
    TAG_BUSINESS_UNIT,
    TAG_IDP,
    TAG_MFA,
)
from federation.refusals import Refused

POLICY_VERSION = "2012-10-17"
STATEMENT_SID = "FedAccessBroker"
ACTIONS = ("sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession")
# Every tag key the broker may set on a session; TagSession is allowed for these only.
SESSION_TAG_KEYS = (TAG_ACCESS_REQUEST, TAG_BREAK_GLASS, TAG_BUSINESS_UNIT, TAG_IDP, TAG_MFA)

_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([\w+=,.@-]+)/.+$")
_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/([\w+=,.@/-]+)$")
# A role principal as IAM stores it once the role it named is gone (recreated broker role).
UNIQUE_ID = re.compile(r"^(AROA|AIDA)[A-Z0-9]{12,}$")


class BrokerPrincipalUnknown(Refused):
    code = "provisioning.broker_principal"
    status = 503


_lock = threading.Lock()
_derived: str | None = None


def principal_from_caller(arn: str) -> str:
    """The IAM principal behind a GetCallerIdentity ARN: an assumed-role session maps back to
    its role (STS drops a role's path there: set BROKER_PRINCIPAL_ARN for a role with a path)."""
    match = _ASSUMED_ROLE.match(arn)
    if match is not None:
        partition, account, role = match.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    if _PRINCIPAL.match(arn):
        return arn
    raise BrokerPrincipalUnknown(
        f"the broker runs as {arn}, which a trust policy cannot name safely; "
        "set BROKER_PRINCIPAL_ARN to the broker's role ARN"
    )


def broker_principal_arn() -> str:
    """BROKER_PRINCIPAL_ARN, else the broker's own identity (one GetCallerIdentity per process)."""
    global _derived
    configured = settings.BROKER_PRINCIPAL_ARN
    if configured:
        if not _PRINCIPAL.match(configured):
            raise BrokerPrincipalUnknown(
                f"BROKER_PRINCIPAL_ARN {configured!r} is not an IAM role or user ARN"
            )
        return str(configured)
    with _lock:
        if _derived is None:
            problems = []
            for endpoint in sts.endpoints():
                try:
                    arn = str(sts.client_for(endpoint).get_caller_identity()["Arn"])
                except (BotoCoreError, ClientError) as exc:  # any failure: the next endpoint
                    problems.append(f"{endpoint.region}: {type(exc).__name__}")
                    continue
                _derived = principal_from_caller(arn)
                break
            else:
                raise BrokerPrincipalUnknown(
                    "cannot learn the broker's identity from STS "
                    f"({'; '.join(problems) or 'no endpoint'}); set BROKER_PRINCIPAL_ARN"
                )
        return _derived


def reset_broker_principal() -> None:
    global _derived
    with _lock:
        _derived = None


def trust_policy(
    broker_arn: str, business_unit: str, *, require_mfa: bool = False
) -> dict[str, Any]:
    """The trust policy of a provisioned role of ``business_unit``'s account. With
    ``require_mfa`` (SPEC §4 Step-up) a session must also carry the tag MFA=true, which the
    broker sets only after a fresh MFA sign-in: AWS itself refuses any other."""
    equals = {
        "aws:PrincipalArn": broker_arn,
        f"aws:RequestTag/{TAG_BUSINESS_UNIT}": business_unit,
    }
    if require_mfa:
        equals[f"aws:RequestTag/{TAG_MFA}"] = "true"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": STATEMENT_SID,
                "Effect": "Allow",
                "Principal": {"AWS": broker_arn},
                "Action": list(ACTIONS),
                "Condition": {
                    "StringEquals": equals,
                    "StringLike": {"sts:SourceIdentity": "*"},
                    "Null": {f"aws:RequestTag/{TAG_IDP}": "false"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": list(SESSION_TAG_KEYS)},
                },
            }
        ],
    }


_SCALAR_KEYS = frozenset({"Version", "Sid", "Effect"})


def normalise(node: Any, key: str | None = None) -> Any:
    """A policy in one canonical form, so equal policies compare equal whatever IAM's
    formatting: keys sorted, a single value and a one-item list alike, lists sorted."""
    if key == "Statement" and isinstance(node, dict):
        node = [node]
    if isinstance(node, dict):
        return {k: normalise(v, k) for k, v in sorted(node.items())}
    if key in _SCALAR_KEYS:
        return node
    items = node if isinstance(node, list) else [node]
    if all(isinstance(item, str) for item in items):
        return sorted(set(items))
    return sorted((normalise(item) for item in items), key=lambda x: json.dumps(x, sort_keys=True))


def policy_size(document: dict[str, Any]) -> int:
    """IAM counts a policy's characters without whitespace."""
    return len(re.sub(r"\s", "", json.dumps(document, separators=(",", ":"))))


def principals(document: dict[str, Any]) -> list[str]:
    """Every AWS principal the policy's Allow statements name."""
    found: list[str] = []
    for statement in normalise(document).get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        if principal == ["*"]:
            found.append("*")
        elif isinstance(principal, dict):
            for values in principal.values():
                found.extend(values)
    return found
