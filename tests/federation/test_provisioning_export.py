"""`export_roles --format cloudformation` (SPEC §3.2): the template passes cfn-lint, and a stack
made from it reads back in sync with the tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from federation.provisioning import trust
from tests.aws import account_client
from tests.federation.test_provisioning_plan import BROKER, DW_PROD, PROD, World, run, world

__all__ = ["world"]

CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def test_template_holds_the_accounts_roles_and_passes_cfn_lint(
    world: World, tmp_path: Path
) -> None:
    code, out, err = run("export_roles", "--account", "pb-prod", "--format", "cloudformation")

    assert code == 0, err
    template = json.loads(out)
    resources = template["Resources"]
    assert sorted(resources) == ["RoleAdmin", "RoleCloudEng"]
    cloud_eng = resources["RoleCloudEng"]["Properties"]
    assert cloud_eng["ManagedPolicyArns"] == [f"arn:aws:iam::{PROD}:policy/read-only"]
    assert cloud_eng["MaxSessionDuration"] == 7200
    assert cloud_eng["AssumeRolePolicyDocument"] == trust.trust_policy(BROKER, "pb")
    path = tmp_path / "roles.json"
    path.write_text(out)
    lint = subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_stack_from_the_template_reads_back_in_sync(world: World) -> None:
    _, out, _ = run("export_roles", "--account", DW_PROD, "--format", "cloudformation")

    account_client(world.aws.url, DW_PROD, "cloudformation").create_stack(
        StackName="fedaccess-roles", TemplateBody=out, Capabilities=["CAPABILITY_NAMED_IAM"]
    )

    code, plan, _ = run("roles_plan", "--account", DW_PROD, "--detailed-exitcode")
    assert code == 0, plan


def test_an_unknown_account_is_refused(world: World) -> None:
    code, _, err = run("export_roles", "--account", "nope", "--format", "cloudformation")
    assert code == 1 and "no account with id or alias 'nope'" in err
