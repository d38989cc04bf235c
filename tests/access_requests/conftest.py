"""A small world for the request workflow: one business unit with a dev and a prod account, an
eligible privileged role and a standing one, a requester, two approvers and an outsider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from access_requests.models import AccessRequest
from access_requests.services import workflow
from federation.entitlements.resolve import Entitlement, find_entitlement
from federation.models import Access, Account, GroupMapping, LogicalRole, User
from tests.access_requests.live import (
    celery_worker,
    mail_sink,
    private_broker,
    private_worker,
    webhook_sink,
)
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)

# Fixtures for the task tests.
__all__ = ["celery_worker", "mail_sink", "private_broker", "private_worker", "webhook_sink"]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class World:
    dev: Account
    prod: Account
    admin_role: LogicalRole
    standing_role: LogicalRole
    eligible: GroupMapping
    requester: User
    approver: User
    second_approver: User
    outsider: User


def build_world() -> World:
    pb = BusinessUnitFactory(slug="pb", approver_groups=["aws-pb-managers"])
    dev = AccountFactory(alias="pb-dev", account_id="111111111111", business_unit=pb)
    prod = AccountFactory(
        alias="pb-prod", account_id="222222222222", business_unit=pb, environment="prod"
    )
    admin_role = LogicalRoleFactory(name="admin", privileged=True)
    standing_role = LogicalRoleFactory(name="cloud-eng")
    eligible = GroupMappingFactory(
        group="aws-pb-admin",
        role=admin_role,
        business_unit=pb,
        access=Access.ELIGIBLE,
        max_grant=timedelta(hours=4),
    )
    GroupMappingFactory(group="aws-pb-cloud-eng", role=standing_role, business_unit=pb)
    return World(
        dev=dev,
        prod=prod,
        admin_role=admin_role,
        standing_role=standing_role,
        eligible=eligible,
        requester=UserFactory(
            username="rita", directory_groups=["aws-pb-admin", "aws-pb-cloud-eng"]
        ),
        approver=UserFactory(username="anna", directory_groups=["aws-pb-managers"]),
        second_approver=UserFactory(username="bob", directory_groups=["aws-pb-managers"]),
        outsider=UserFactory(username="olga", directory_groups=["aws-dw-managers"]),
    )


@pytest.fixture
def world(db: None) -> World:
    return build_world()


def approved_request(
    world: World,
    now: datetime,
    *,
    account_id: str = "111111111111",
    justification: str = "x",
    ticket: str = "",
    duration: timedelta = timedelta(hours=1),
) -> AccessRequest:
    """The requester's request for admin in ``account_id``, approved once by the approver
    (a grant in dev, which needs one approval; one vote of two in prod)."""
    request = workflow.submit_request(
        world.requester,
        account_id=account_id,
        role="admin",
        justification=justification,
        ticket=ticket,
        duration=duration,
        now=now,
    )
    workflow.decide_request(request, actor=world.approver, decision="approve", now=now)
    request.refresh_from_db()
    return request


def usable_entitlement(user: User, account: str, *, at: datetime) -> Entitlement | None:
    """What entitlements give ``user`` for (account, admin) at ``at``, by their groups now."""
    user.refresh_from_db()
    return find_entitlement(user.directory_groups, account, "admin", now=at, user_id=user.pk)


def usable_access(user: User, account: str, *, at: datetime) -> str | None:
    found = usable_entitlement(user, account, at=at)
    return found.access if found else None
