"""`roles_apply` in waves (SPEC §3.2): canary, then dev, test, prod; read back after each wave;
stop at the first failing wave leaving later waves untouched; `--resume`. Against moto over HTTP
with several accounts; IAM read back by the test's own clients is the ground truth."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.models import AuditEvent, Rollout, RolloutStep
from federation.provisioning import trust
from federation.provisioning.desired import MANAGED_TAG, VERSION_TAG
from tests.aws import free_port
from tests.federation.test_provisioning_plan import (
    ACCOUNTS,
    BROKER,
    CANARY,
    DEV,
    DW_PROD,
    MOMENT,
    PROD,
    World,
    provision_by_hand,
    run,
    wanted,
    world,
)

__all__ = ["world"]

# What the management role may be asked to do (docs/control-loop.md lists its policy).
MANAGEMENT_ACTIONS = {
    "AssumeRole",
    "ListRoles",
    "GetAccountAuthorizationDetails",
    "CreateRole",
    "UpdateAssumeRolePolicy",
    "UpdateRole",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "TagRole",
    "DeleteRolePolicy",
    "DeleteRole",
}


def test_apply_creates_every_role_as_planned_and_then_plans_nothing(world: World) -> None:
    world.aws.start_recording()

    code, out, err = run("roles_apply", "--yes")

    assert code == 0, out + err
    [rollout] = Rollout.objects.all()
    assert f"rollout {rollout.pk}: done" in out
    assert set(world.aws.actions()) <= MANAGEMENT_ACTIONS
    role = world.role(PROD, "admin")
    assert trust.normalise(role["AssumeRolePolicyDocument"]) == trust.normalise(
        trust.trust_policy(BROKER, "pb")
    )
    assert role["MaxSessionDuration"] == 3600
    tags = {t["Key"]: t["Value"] for t in world.iam(PROD).list_role_tags(RoleName="admin")["Tags"]}
    assert tags == {MANAGED_TAG: "true", VERSION_TAG: str(rollout.mapping_version)}
    assert world.attached(PROD, "cloud-eng") == [f"arn:aws:iam::{PROD}:policy/read-only"]
    assert world.attached(DEV, "cloud-eng") == [f"arn:aws:iam::{DEV}:policy/power"]
    assert world.role(DEV, "cloud-eng")["MaxSessionDuration"] == 7200
    assert run("roles_plan", "--detailed-exitcode")[0] == 0


def test_each_account_is_audited_with_before_and_after_in_wave_order(world: World) -> None:
    provision_by_hand(world)
    world.iam(PROD).update_role(RoleName="admin", MaxSessionDuration=43200)
    world.iam(CANARY).update_role(RoleName="cloud-eng", MaxSessionDuration=43200)

    run("roles_apply", "--yes")

    events = list(
        AuditEvent.objects.filter(event_type="provisioning.account_applied").order_by("seq")
    )
    assert [e.account_id for e in events] == [CANARY, PROD]  # the canary wave came first
    prod = events[1].data
    assert prod["wave"] == "prod"
    assert prod["before"]["admin"]["max_session_seconds"] == 43200
    assert prod["after"]["admin"]["max_session_seconds"] == 3600
    assert prod["changes"] == [
        {
            "action": "update",
            "role": "admin",
            "differences": ["session length 43200s, wanted 3600s"],
        }
    ]


def test_a_failing_wave_stops_the_rollout_and_later_waves_stay_untouched(world: World) -> None:
    # The dev policy does not exist in the dev account: IAM refuses the attach there.
    world.iam(DEV).delete_policy(PolicyArn=f"arn:aws:iam::{DEV}:policy/power")

    code, out, err = run("roles_apply", "--yes")

    assert code == 1
    [rollout] = Rollout.objects.all()
    assert rollout.state == Rollout.State.STOPPED
    assert "wave dev failed in 222222222222 (pb-dev); later waves untouched" in err
    states = dict(RolloutStep.objects.values_list("account_id", "state"))
    assert states == {CANARY: "done", DEV: "failed", PROD: "pending", DW_PROD: "pending"}
    step = RolloutStep.objects.get(account_id=DEV)
    assert f"attaching arn:aws:iam::{DEV}:policy/power to role 'cloud-eng' in account {DEV}" in (
        step.error
    )
    assert world.role_names(CANARY) == ["cloud-eng"]
    assert world.role_names(PROD) == [] and world.role_names(DW_PROD) == []

    # The operator fixes the cause and resumes: the same stored plan goes on.
    world.iam(DEV).create_policy(
        PolicyName="power",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    code, out, err = run("roles_apply", "--resume", str(rollout.pk))

    assert code == 0, out + err
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.DONE
    assert world.attached(DEV, "cloud-eng") == [f"arn:aws:iam::{DEV}:policy/power"]
    assert world.role_names(PROD) == ["admin", "cloud-eng"]
    assert run("roles_plan", "--detailed-exitcode")[0] == 0
    assert run("roles_apply", "--resume", str(rollout.pk))[0] == 1  # done is done


def test_an_untagged_role_with_a_wanted_name_survives_apply_byte_for_byte(world: World) -> None:
    client = world.iam(PROD)
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    client.create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps(document))
    client.attach_role_policy(RoleName="admin", PolicyArn=f"arn:aws:iam::{PROD}:policy/extra")
    before = world.role(PROD, "admin")

    code, out, err = run("roles_apply", "--yes")

    assert code == 0, out + err
    assert world.role(PROD, "admin") == before
    assert world.attached(PROD, "admin") == [f"arn:aws:iam::{PROD}:policy/extra"]
    _, plan, _ = run("roles_plan", "--account", PROD)
    assert "! conflict (left alone) role admin" in plan


def test_apply_repairs_hand_edits_and_deletes_only_our_unreached_roles(world: World) -> None:
    provision_by_hand(world)
    client = world.iam(PROD)
    loose = wanted(PROD, "admin").trust_policy
    loose["Statement"][0]["Principal"] = {"AWS": "arn:aws:iam::777777777777:root"}
    client.update_assume_role_policy(RoleName="admin", PolicyDocument=json.dumps(loose))
    client.attach_role_policy(RoleName="admin", PolicyArn=f"arn:aws:iam::{PROD}:policy/extra")
    ours = json.dumps(wanted(PROD, "admin").trust_policy)
    client.create_role(
        RoleName="retired",
        AssumeRolePolicyDocument=ours,
        Tags=[{"Key": MANAGED_TAG, "Value": "true"}],
    )
    client.attach_role_policy(RoleName="retired", PolicyArn=f"arn:aws:iam::{PROD}:policy/extra")
    client.create_role(RoleName="not-ours", AssumeRolePolicyDocument=ours)

    code, out, err = run("roles_apply", "--yes")

    assert code == 0, out + err
    assert trust.principals(world.role(PROD, "admin")["AssumeRolePolicyDocument"]) == [BROKER]
    assert world.attached(PROD, "admin") == []
    assert world.role_names(PROD) == ["admin", "cloud-eng", "not-ours"]
    event = AuditEvent.objects.get(event_type="provisioning.account_applied", account_id=PROD)
    assert event.data["before"]["retired"]["tags"] == {MANAGED_TAG: "true"}
    assert event.data["after"]["retired"] is None
    assert trust.principals(event.data["before"]["admin"]["trust_policy"]) == [
        "arn:aws:iam::777777777777:root"
    ]


def test_an_account_that_cannot_be_read_starts_no_rollout(
    world: World, settings: SettingsWrapper
) -> None:
    settings.STS_ENDPOINTS = ["us-east-1=http://127.0.0.1:9"]

    code, _, err = run("roles_apply", "--yes", "--account", PROD)

    assert code == 1
    assert (
        f"no rollout started: account {PROD}: cannot assume fedaccess-management in {PROD}" in err
    )
    assert not Rollout.objects.exists()
    assert world.role_names(PROD) == []


def test_apply_with_nothing_to_do_stores_no_rollout(world: World) -> None:
    provision_by_hand(world)

    code, out, _ = run("roles_apply", "--yes")

    assert code == 0 and "Nothing to apply" in out
    assert not Rollout.objects.exists()


def test_resuming_an_unknown_rollout_is_refused(world: World) -> None:
    code, _, err = run("roles_apply", "--resume", "4242")
    assert code == 1 and "there is no rollout 4242" in err


def test_only_the_named_accounts_are_applied(world: World) -> None:
    run("roles_apply", "--yes", "--account", "dw-prod")

    assert world.role_names(DW_PROD) == ["admin"]
    assert all(world.role_names(a) == [] for a in ACCOUNTS if a != DW_PROD)


class _ThrottlingProxy(BaseHTTPRequestHandler):
    """Answers the first ``throttle`` CreateRole calls with IAM's Throttling error, forwards
    everything else to moto: IAM under load, as a burst of role writes meets it."""

    upstream = ""
    throttle = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: Any = self.server
        if b"Action=CreateRole" in body and server.throttled < self.throttle:
            server.throttled += 1
            payload = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                b"<Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"
            )
            self.send_response(400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        skip = {"host", "content-length", "connection", "accept-encoding"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        answer = requests.post(self.upstream, data=body, headers=headers, timeout=30)
        self.send_response(answer.status_code)
        for key in ("Content-Type", "x-amzn-RequestId"):
            if key in answer.headers:
                self.send_header(key, answer.headers[key])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_iam_throttling_is_retried_with_backoff(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type("Handler", (_ThrottlingProxy,), {"upstream": world.aws.url, "throttle": 2})
    proxy = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    proxy.throttled = 0  # type: ignore[attr-defined]
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", f"http://127.0.0.1:{proxy.server_address[1]}")
    try:
        code, out, err = run("roles_apply", "--yes", "--account", "dw-prod")
    finally:
        proxy.shutdown()
        proxy.server_close()

    assert code == 0, out + err
    assert proxy.throttled == 2  # type: ignore[attr-defined]
    assert world.role_names(DW_PROD) == ["admin"]


def test_no_second_rollout_starts_while_one_is_running(world: World) -> None:
    # A rollout interrupted by a crash stays running until it is resumed.
    interrupted = Rollout.objects.create(
        created_at=MOMENT, created_by="cli:ops", mapping_version=1, broker_arn=BROKER
    )

    code, _, err = run("roles_apply", "--yes")

    assert code == 1 and "another rollout is running; resume it" in err
    assert list(Rollout.objects.all()) == [interrupted]
    assert all(world.role_names(a) == [] for a in ACCOUNTS)


def test_without_yes_and_without_a_terminal_nothing_is_applied(world: World) -> None:
    code, out, err = run("roles_apply")

    assert code == 1 and "not applied (answer y, or pass --yes)" in err
    assert "+ create role admin" in out  # the plan was shown first
    assert not Rollout.objects.exists()
    assert all(world.role_names(a) == [] for a in ACCOUNTS)
