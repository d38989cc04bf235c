"""What a mapping draft would do to the IAM roles, before it is applied: the roles its document
calls for that the tables do not (to create), the ones it no longer calls for (to delete) and
the ones whose documents change. Compares desired states only: no IAM call, so a draft's plan
page can show it at once (``roles_plan`` then compares with the accounts themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from federation.mappings.document import MappingDocument
from federation.mappings.state import get_current_document
from federation.provisioning import trust
from federation.provisioning.desired import VERSION_TAG, DesiredRole, desired_roles
from federation.refusals import Refused

# Stands for a broker whose identity is learnt from STS at run time: the broker is the same
# before and after a draft, so a preview needs no STS call (only the trust policy's size depends
# on it, and this is as long as a typical broker role ARN).
_PREVIEW_BROKER = "arn:aws:iam::000000000000:role/fedaccess-broker"


@dataclass(frozen=True)
class RolePreview:
    action: str  # create, delete, change
    role: DesiredRole

    @property
    def sentence(self) -> str:
        verb = {"create": "creates", "delete": "deletes", "change": "changes"}[self.action]
        return f"{verb} IAM role {self.role.arn} ({self.role.logical_role})"


def _comparable(role: DesiredRole) -> tuple[object, ...]:
    tags = {k: v for k, v in role.tags.items() if k != VERSION_TAG}
    return (role.path, role.trust_policy, role.max_session_seconds, role.policies, tags)


def preview_roles(document: MappingDocument) -> list[RolePreview]:
    """The role changes ``document`` makes against the tables now (raises ProvisioningInvalid
    when the draft calls for a role IAM would refuse: the draft can say so before approval)."""
    version, current = get_current_document()
    broker = trust.broker_principal_arn() if settings.BROKER_PRINCIPAL_ARN else _PREVIEW_BROKER
    before = {
        (r.account_id, r.name.lower()): r
        for roles in desired_roles(current, version=version, broker_arn=broker).values()
        for r in roles
    }
    after = {
        (r.account_id, r.name.lower()): r
        for roles in desired_roles(document, version=version + 1, broker_arn=broker).values()
        for r in roles
    }
    found = [RolePreview("create", r) for k, r in after.items() if k not in before]
    found += [RolePreview("delete", r) for k, r in before.items() if k not in after]
    found += [
        RolePreview("change", r)
        for k, r in after.items()
        if k in before and _comparable(before[k]) != _comparable(r)
    ]
    return sorted(found, key=lambda p: (p.role.account_id, p.role.name, p.action))


def preview_for_draft(document: MappingDocument) -> dict[str, Any]:
    """The preview as a draft's plan stores it: ``{"roles": [...], "problem": str}``. A draft
    that calls for a role IAM would refuse is still a draft (the tables decide access); the
    problem says why ``roles_apply`` would refuse it, before anyone approves it."""
    try:
        previews = preview_roles(document)
    except Refused as refusal:
        return {"roles": [], "problem": refusal.message}
    return {
        "roles": [
            {
                "action": p.action,
                "account_id": p.role.account_id,
                "account_alias": p.role.account_alias,
                "role": p.role.logical_role,
                "arn": p.role.arn,
                "sentence": p.sentence,
            }
            for p in previews
        ],
        "problem": "",
    }
