"""`drift_check` and /drift/ (SPEC §3.2, §3.4, §4 Control loop): out-of-band edits are reported
within one run, kept with first and last seen, audited once, resolved by apply."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import iam
from federation.models import AuditEvent, DriftFinding
from federation.provisioning.drift import check_drift, drifted_roles
from federation.provisioning.tasks import drift_check
from tests.factories import UserFactory
from tests.federation.test_provisioning_plan import (
    DEV,
    DW_PROD,
    PROD,
    World,
    provision_by_hand,
    run,
    wanted,
    world,
)

__all__ = ["world"]


def _open() -> dict[tuple[str, str], list[str]]:
    return {
        (f.account_id, f.role_name): f.differences
        for f in DriftFinding.objects.filter(resolved_at__isnull=True)
    }


def test_in_sync_accounts_report_no_drift(world: World) -> None:
    provision_by_hand(world)

    code, out, _ = run("drift_check")

    assert code == 0, out
    assert "0 drifted role(s)" in out
    assert not DriftFinding.objects.exists()


def test_every_kind_of_drift_is_recorded_with_what_differs(world: World) -> None:
    provision_by_hand(world)
    prod = world.iam(PROD)
    anyone = wanted(PROD, "admin").trust_policy
    anyone["Statement"][0]["Principal"] = {"AWS": "*"}
    prod.update_assume_role_policy(RoleName="admin", PolicyDocument=json.dumps(anyone))
    prod.attach_role_policy(RoleName="cloud-eng", PolicyArn=f"arn:aws:iam::{PROD}:policy/extra")
    prod.update_role(RoleName="cloud-eng", MaxSessionDuration=43200)
    dev = world.iam(DEV)
    dev.detach_role_policy(RoleName="cloud-eng", PolicyArn=f"arn:aws:iam::{DEV}:policy/power")
    dev.delete_role(RoleName="cloud-eng")
    world.iam(DW_PROD).create_role(
        RoleName="leftover",
        AssumeRolePolicyDocument=json.dumps(anyone),
        Tags=[{"Key": "fedaccess:managed", "Value": "true"}],
    )

    code, out, _ = run("drift_check")

    assert code == 2
    assert _open() == {
        (PROD, "admin"): ["trust policy differs"],
        (PROD, "cloud-eng"): [
            f"other policy arn:aws:iam::{PROD}:policy/extra attached",
            "session length 43200s, wanted 7200s",
        ],
        (DEV, "cloud-eng"): ["missing"],
        (DW_PROD, "leftover"): ["managed role the tables no longer call for"],
    }
    assert "  admin: update (since" in out and "    - trust policy differs" in out
    assert drifted_roles() == 4


def test_drift_is_audited_once_kept_with_first_and_last_seen_and_resolved_by_apply(
    world: World,
) -> None:
    provision_by_hand(world)
    world.iam(PROD).update_role(RoleName="admin", MaxSessionDuration=43200)
    first = timezone.now()
    check_drift(now=first)
    later = first + timedelta(hours=1)
    check_drift(now=later)

    [finding] = DriftFinding.objects.all()
    assert (finding.first_seen, finding.last_seen, finding.resolved_at) == (first, later, None)
    assert AuditEvent.objects.filter(event_type="provisioning.drift_found").count() == 1

    assert run("roles_apply", "--yes")[0] == 0
    report = check_drift(now=later + timedelta(hours=1))

    assert (report.new, report.resolved, report.open) == (0, 1, ())
    finding.refresh_from_db()
    assert finding.resolved_at == later + timedelta(hours=1)
    resolved = AuditEvent.objects.get(event_type="provisioning.drift_resolved")
    assert resolved.target == f"{PROD}/admin"


def test_an_unreadable_account_keeps_its_findings_and_is_an_error(
    world: World, settings: SettingsWrapper
) -> None:
    world.iam(PROD)  # the test's own client, before STS goes away
    check_drift(now=timezone.now())
    before = _open()
    settings.STS_ENDPOINTS = ["us-east-1=http://127.0.0.1:9"]
    iam.reset_clients()  # no management session left over from the first check

    code, _, err = run("drift_check", "--account", PROD)

    assert code == 1
    assert f"account {PROD}: cannot assume" in err
    assert _open() == before  # nothing resolved by not looking


def test_the_schedule_runs_the_drift_check(world: World) -> None:
    assert django_settings.CELERY_BEAT_SCHEDULE["drift-check"]["task"] == drift_check.name
    provision_by_hand(world)
    world.iam(PROD).update_role(RoleName="admin", MaxSessionDuration=43200)

    assert drift_check.delay().get() == 1
    assert _open() == {(PROD, "admin"): ["session length 43200s, wanted 3600s"]}


def test_drift_page_is_for_admins_and_auditors_with_a_repair_plan_for_admins(
    world: World, client: Client, settings: SettingsWrapper
) -> None:
    settings.ADMIN_GROUPS, settings.AUDITOR_GROUPS = ["fed-admins"], ["fed-auditors"]
    provision_by_hand(world)
    world.iam(PROD).update_role(RoleName="admin", MaxSessionDuration=43200)
    check_drift(now=timezone.now())

    assert client.get("/drift/").status_code == 302
    client.force_login(UserFactory(directory_groups=["employees"]))
    assert client.get("/drift/").status_code == 403
    assert client.get(f"/drift/plan/{PROD}/").status_code == 403

    client.force_login(UserFactory(directory_groups=["fed-auditors"]))
    page = client.get("/drift/").content.decode()
    assert "session length 43200s, wanted 3600s" in page
    assert "Plan the repair" not in page
    assert client.get(f"/drift/plan/{PROD}/").status_code == 403

    client.force_login(UserFactory(directory_groups=["fed-admins"]))
    assert "Plan the repair" in client.get("/drift/").content.decode()
    plan = client.get(f"/drift/plan/{PROD}/").content.decode()
    assert "session 43200s -&gt; 3600s" in plan
    assert client.get("/drift/plan/999999999999/").status_code == 404
