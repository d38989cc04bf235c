"""`roles_plan` (SPEC §3.2) against a moto server over HTTP with several accounts, each read
through the management role. IAM read back by the test's own clients is the ground truth; drift
is made with boto3 the way a person would in the console."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import iam, iam_roles, sts
from federation.mappings import apply_document, parse_document
from federation.mappings.state import get_current_document
from federation.models import DriftFinding, Rollout, RolloutStep
from federation.provisioning import trust
from federation.provisioning.desired import MANAGED_TAG, DesiredRole, desired_roles
from tests.aws import MotoServer, account_client
from tests.issuance import ErrorEndpoint

BROKER = "arn:aws:iam::999999999999:role/fedaccess-broker"
MANAGEMENT = "fedaccess-management"
MOMENT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
CANARY, DEV, PROD, DW_PROD = "111111111111", "222222222222", "333333333333", "444444444444"

TABLES = """
business_units:
  - {slug: pb, name: Personal Banking}
  - {slug: dw, name: Data Warehouse}
accounts:
  - {id: "111111111111", alias: pb-canary, business_unit: pb, environment: dev, canary: true}
  - {id: "222222222222", alias: pb-dev, business_unit: pb, environment: dev}
  - {id: "333333333333", alias: pb-prod, business_unit: pb, environment: prod}
  - {id: "444444444444", alias: dw-prod, business_unit: dw, environment: prod}
roles:
  - name: cloud-eng
    max_session_minutes: 120
    policies:
      dev: ["arn:aws:iam::${AccountId}:policy/power"]
      prod: ["arn:aws:iam::${AccountId}:policy/read-only"]
  - {name: admin, privileged: true}
mappings:
  - {group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb, access: standing}
  - {group: aws-pb-admin, role: admin, business_unit: pb, environments: [prod], access: eligible}
  - {group: aws-dw-admin, role: admin, business_unit: dw, access: eligible}
"""
ACCOUNTS = (CANARY, DEV, PROD, DW_PROD)


@dataclass(frozen=True)
class World:
    """The moto server, and the test's own IAM client per account."""

    aws: MotoServer

    def iam(self, account_id: str) -> Any:
        return account_client(self.aws.url, account_id)

    def role(self, account_id: str, name: str) -> dict[str, Any]:
        return dict(self.iam(account_id).get_role(RoleName=name)["Role"])

    def role_names(self, account_id: str) -> list[str]:
        return sorted(r["RoleName"] for r in self.iam(account_id).list_roles()["Roles"])

    def attached(self, account_id: str, name: str) -> list[str]:
        client = self.iam(account_id)
        found = client.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        return sorted(p["PolicyArn"] for p in found)

    def create_policies(self, *account_ids: str) -> None:
        for account_id in account_ids:
            for name in ("power", "read-only", "extra"):
                self.iam(account_id).create_policy(
                    PolicyName=name,
                    PolicyDocument=json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}
                            ],
                        }
                    ),
                )

    def create_like(self, want: DesiredRole, **changes: Any) -> None:
        """Create ``want`` by hand exactly as provisioning would (then ``changes`` applied)."""
        client = self.iam(want.account_id)
        tags = changes.get("tags", want.tags)
        client.create_role(
            RoleName=want.name,
            Path=want.path,
            AssumeRolePolicyDocument=json.dumps(changes.get("trust", want.trust_policy)),
            MaxSessionDuration=changes.get("session", want.max_session_seconds),
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )
        for arn in changes.get("policies", want.policies):
            client.attach_role_policy(RoleName=want.name, PolicyArn=arn)


def configure(settings: SettingsWrapper) -> None:
    settings.IAM_MANAGEMENT_ROLE_NAME = MANAGEMENT
    settings.BROKER_PRINCIPAL_ARN = BROKER
    settings.STS_REGIONS = ["us-east-1"]
    settings.STS_ENDPOINTS = []
    settings.STS_BROKER_CHAINED = "false"
    sts.reset_clients()
    iam.reset_clients()
    trust.reset_broker_principal()


@pytest.fixture
def world(aws: MotoServer, settings: SettingsWrapper, db: None) -> Iterator[World]:
    configure(settings)
    apply_document(parse_document(TABLES), actor="test", source="import", now=MOMENT)
    world = World(aws)
    world.create_policies(*ACCOUNTS)
    yield world
    sts.reset_clients()
    iam.reset_clients()


def desired() -> dict[str, list[DesiredRole]]:
    version, document = get_current_document()
    return desired_roles(document, version=version, broker_arn=BROKER)


def wanted(account_id: str, logical: str) -> DesiredRole:
    [role] = [r for r in desired()[account_id] if r.logical_role == logical]
    return role


def provision_by_hand(world: World) -> None:
    for roles in desired().values():
        for role in roles:
            world.create_like(role)


def run(command: str, *args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue(), err.getvalue()
    except CommandError as error:
        return 1, out.getvalue(), err.getvalue() + str(error)
    return 0, out.getvalue(), err.getvalue()


def test_plan_lists_every_role_to_create_and_changes_nothing(world: World) -> None:
    code, out, _ = run("roles_plan", "--detailed-exitcode")

    assert code == 2
    assert "+ create role cloud-eng (arn:aws:iam::111111111111:role/cloud-eng)" in out
    assert "+ create role admin (arn:aws:iam::444444444444:role/admin)" in out
    assert "+ policy arn:aws:iam::333333333333:policy/read-only" in out
    assert '"aws:RequestTag/BusinessUnit": [' in out
    # Canary first, then dev, then prod.
    order = [out.index(f"account {a}") for a in (CANARY, DEV, PROD)]
    assert order == sorted(order)
    for account_id in ACCOUNTS:
        assert world.role_names(account_id) == []


def test_plan_is_in_sync_when_the_accounts_hold_exactly_the_roles(world: World) -> None:
    provision_by_hand(world)

    code, out, _ = run("roles_plan", "--detailed-exitcode")

    assert code == 0, out
    assert out.count("in sync") == len(ACCOUNTS)


def test_without_detailed_exitcode_pending_changes_exit_zero(world: World) -> None:
    assert run("roles_plan")[0] == 0


def test_hand_edits_show_as_a_readable_change(world: World) -> None:
    provision_by_hand(world)
    client = world.iam(PROD)
    loose = wanted(PROD, "admin").trust_policy
    del loose["Statement"][0]["Condition"]["StringLike"]
    client.update_assume_role_policy(RoleName="admin", PolicyDocument=json.dumps(loose))
    client.attach_role_policy(RoleName="cloud-eng", PolicyArn=f"arn:aws:iam::{PROD}:policy/extra")
    client.detach_role_policy(
        RoleName="cloud-eng", PolicyArn=f"arn:aws:iam::{PROD}:policy/read-only"
    )
    client.update_role(RoleName="cloud-eng", MaxSessionDuration=43200)

    code, out, _ = run("roles_plan", "--account", "pb-prod", "--detailed-exitcode")

    assert code == 2
    assert "~ change role admin" in out
    assert '+          "sts:SourceIdentity": [' in out
    assert "--- in IAM" in out and "+++ wanted" in out
    assert f"- policy arn:aws:iam::{PROD}:policy/extra" in out
    assert f"+ policy arn:aws:iam::{PROD}:policy/read-only" in out
    assert "session 43200s -> 7200s" in out
    assert "account 111111111111" not in out  # only the selected account is read


def test_a_role_without_our_tag_is_a_conflict_never_a_change(world: World) -> None:
    provision_by_hand(world)
    client = world.iam(DEV)
    want = wanted(DEV, "cloud-eng")
    client.detach_role_policy(RoleName="cloud-eng", PolicyArn=want.policies[0])
    client.delete_role(RoleName="cloud-eng")
    world.create_like(want, tags={"team": "platform"}, session=3600)

    code, out, _ = run("roles_plan", "--account", DEV, "--detailed-exitcode")

    assert code == 2
    assert "! conflict (left alone) role cloud-eng" in out
    assert f"a role named cloud-eng exists without our {MANAGED_TAG} tag" in out
    assert "change role" not in out


def test_managed_roles_no_row_reaches_are_deleted_and_others_ignored(world: World) -> None:
    provision_by_hand(world)
    client = world.iam(DW_PROD)
    document = json.dumps(wanted(DW_PROD, "admin").trust_policy)
    client.create_role(
        RoleName="old-role",
        AssumeRolePolicyDocument=document,
        Tags=[{"Key": MANAGED_TAG, "Value": "true"}],
    )
    client.create_role(RoleName="someone-elses", AssumeRolePolicyDocument=document)

    _, out, _ = run("roles_plan", "--account", "dw-prod")

    assert "- delete role old-role" in out
    assert "someone-elses" not in out


def test_a_recreated_broker_role_is_reported_by_name(world: World) -> None:
    provision_by_hand(world)
    # IAM shows the unique id of a deleted principal in place of its ARN.
    stale = wanted(PROD, "admin").trust_policy
    stale["Statement"][0]["Principal"] = {"AWS": "AROAQXYZ7EXAMPLE12345"}
    world.iam(PROD).update_assume_role_policy(RoleName="admin", PolicyDocument=json.dumps(stale))

    _, out, _ = run("roles_plan", "--account", PROD)

    assert "the trust policy names AROAQXYZ7EXAMPLE12345 where a principal was" in out
    assert "recreated broker role" in out


def test_an_account_the_management_role_cannot_enter_is_an_error_naming_it(
    world: World,
    settings: SettingsWrapper,
    sts_error_endpoint: Callable[[int, str], ErrorEndpoint],
) -> None:
    settings.STS_ENDPOINTS = [f"us-east-1={sts_error_endpoint(403, 'AccessDenied').url}"]

    code, out, err = run("roles_plan", "--account", PROD, "--detailed-exitcode")

    assert code == 1
    assert f"ERROR cannot assume {MANAGEMENT} in {PROD}: AccessDenied" in out
    assert f"account {PROD}: cannot assume" in err


def test_unknown_account_is_refused(world: World) -> None:
    code, _, err = run("roles_plan", "--account", "nope")
    assert code == 1 and "no account with id or alias 'nope'" in err


def test_tables_iam_would_refuse_stop_the_plan_before_any_call(
    world: World, settings: SettingsWrapper
) -> None:
    settings.ROLE_MANAGED_POLICIES_MAX = 0
    world.aws.start_recording()

    code, _, err = run("roles_plan")

    assert code == 1
    assert "role cloud-eng in account 111111111111 (pb-canary)" in err
    assert world.aws.received("AssumeRole") == []
    assert world.aws.received("ListRoles") == []


def test_reading_an_account_costs_pages_not_calls_per_role(world: World) -> None:
    provision_by_hand(world)
    world.aws.start_recording()

    run("roles_plan")

    assert len(world.aws.received("ListRoles")) == len(ACCOUNTS)
    assert len(world.aws.received("GetAccountAuthorizationDetails")) == len(ACCOUNTS)
    assert world.aws.received("GetRole") == []
    assert world.aws.received("ListAttachedRolePolicies") == []
    sessions = world.aws.received("AssumeRole")
    assert sorted(s["RoleArn"] for s in sessions) == sorted(
        f"arn:aws:iam::{a}:role/{MANAGEMENT}" for a in ACCOUNTS
    )
    assert {s["RoleSessionName"] for s in sessions} == {iam_roles.PROVISIONING_SESSION_NAME}


def test_managed_roles_of_an_account_removed_from_the_tables_are_deleted_then_forgotten(
    world: World,
) -> None:
    assert run("roles_apply", "--yes")[0] == 0
    world.iam(DW_PROD).create_role(RoleName="theirs", AssumeRolePolicyDocument="{}")
    without_dw = TABLES.replace(
        '  - {id: "444444444444", alias: dw-prod, business_unit: dw, environment: prod}\n', ""
    ).replace("  - {group: aws-dw-admin, role: admin, business_unit: dw, access: eligible}\n", "")
    apply_document(parse_document(without_dw), actor="test", source="import", now=MOMENT)

    code, out, _ = run("roles_plan", "--detailed-exitcode")

    assert code == 2
    assert f"account {DW_PROD} (dw-prod, prod, no longer in the tables):" in out
    assert f"  - delete role admin (arn:aws:iam::{DW_PROD}:role/admin)" in out
    assert "theirs" not in out
    code, out, _ = run("drift_check", "--account", "dw-prod")
    assert code == 2 and "admin: delete" in out

    assert run("roles_apply", "--yes")[0] == 0

    assert world.role_names(DW_PROD) == ["theirs"]
    code, out, _ = run("roles_plan", "--detailed-exitcode")
    assert code == 0, out
    assert DW_PROD not in out
    assert run("drift_check")[0] == 0
    assert not DriftFinding.objects.filter(resolved_at__isnull=True).exists()


def test_a_removed_account_that_cannot_be_reached_is_shown_and_blocks_nothing(
    world: World,
    settings: SettingsWrapper,
    sts_error_endpoint: Callable[[int, str], ErrorEndpoint],
) -> None:
    closed = "555555555555"
    rollout = Rollout.objects.create(
        created_at=MOMENT, created_by="test", mapping_version=1, broker_arn=BROKER, state="done"
    )
    RolloutStep.objects.create(
        rollout=rollout,
        wave=1,
        wave_name="dev",
        account_id=closed,
        account_alias="old-dev",
        environment="dev",
        desired=[wanted(DEV, "cloud-eng").to_json()],
        state="done",
    )
    settings.STS_ENDPOINTS = [f"us-east-1={sts_error_endpoint(403, 'AccessDenied').url}"]

    code, out, err = run("roles_plan", "--account", "old-dev", "--detailed-exitcode")

    assert code == 0, err
    assert f"account {closed} (old-dev, dev, no longer in the tables):" in out
    assert f"  UNREACHABLE, its managed roles cannot be checked: cannot assume {MANAGEMENT}" in out
