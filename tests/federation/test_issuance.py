"""Issuing AWS role sessions through the service, against a moto server over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import boto3
import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.models import Grant
from federation.aws import sts
from federation.aws.names import IdentityNotExpressible
from federation.issuance.service import (
    DurationTooShort,
    GrantRequired,
    InvalidIssuanceRequest,
    NotEntitled,
    SessionRefusedByAws,
    StsUnreachable,
    issue_session,
    session_duration,
)
from federation.models import AuditEvent, SessionIssuance
from tests.aws import MotoServer
from tests.factories import AccountRoleFactory, GrantFactory
from tests.issuance import ErrorEndpoint, World, closed_port_url

pytestmark = pytest.mark.django_db


def _issue(world: World, **overrides: object) -> object:
    arguments: dict[str, object] = {
        "account_id": world.pb_dev.account_id,
        "role": "cloud-eng",
        "kind": "cli",
        "requested": None,
        "now": timezone.now(),
        "ip": "192.0.2.10",
    }
    arguments.update(overrides)
    user = arguments.pop("user", world.alice)
    return issue_session(user, **arguments)  # type: ignore[arg-type]


def _sts_client_with(credentials: sts.Credentials, url: str) -> object:
    return boto3.client(
        "sts",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    )


def _grant(world: World, *, ends_in: timedelta) -> Grant:
    now = timezone.now()
    return GrantFactory(
        request__requester=world.alice,
        request__account=world.pb_prod,
        request__role=world.admin,
        starts_at=now - timedelta(minutes=5),
        ends_at=now + ends_in,
    )


def test_issued_credentials_work_and_name_the_role_and_session(
    world: World, broker: MotoServer
) -> None:
    issued = _issue(world)

    identity = _sts_client_with(issued.credentials, broker.url).get_caller_identity()  # type: ignore[attr-defined]
    assert identity["Arn"] == (
        "arn:aws:sts::111111111111:assumed-role/cloud-eng/alice@corp.example"
    )
    row = SessionIssuance.objects.get(pk=issued.issuance_id)  # type: ignore[attr-defined]
    assert (row.user, row.account, row.role, row.kind) == (
        world.alice,
        world.pb_dev,
        world.cloud_eng,
        "cli",
    )
    assert row.session_name == row.source_identity == "alice@corp.example"
    assert row.region == "eu-west-1" and row.endpoint == broker.url
    assert row.duration == timedelta(hours=2) and row.grant is None
    event = AuditEvent.objects.get(event_type="issuance.issued")
    assert event.account_id == "111111111111" and event.ip == "192.0.2.10"
    assert event.data["region"] == "eu-west-1"
    assert event.data["role_arn"] == "arn:aws:iam::111111111111:role/cloud-eng"
    assert event.data["why"] == ["aws-pb-cloud-eng"]
    assert event.data["duration_seconds"] == 7200
    creds = issued.credentials  # type: ignore[attr-defined]
    for secret in (creds.access_key_id, creds.secret_access_key, creds.session_token):
        assert secret not in repr(issued)


def test_source_identity_tags_and_server_side_role_arn_are_sent(
    world: World, broker: MotoServer
) -> None:
    AccountRoleFactory(
        account=world.pb_prod,
        role=world.admin,
        role_arn="arn:aws:iam::222222222222:role/pb-prod-admin",
    )
    grant = _grant(world, ends_in=timedelta(hours=3))
    broker.start_recording()

    issued = _issue(world, account_id="222222222222", role="admin")

    [sent] = broker.received("AssumeRole")
    assert sent["RoleArn"] == "arn:aws:iam::222222222222:role/pb-prod-admin"
    assert sent["SourceIdentity"] == sent["RoleSessionName"] == "alice@corp.example"
    tags = {
        sent[f"Tags.member.{n}.Key"]: sent[f"Tags.member.{n}.Value"]
        for n in range(1, 10)
        if f"Tags.member.{n}.Key" in sent
    }
    assert tags == {
        "BusinessUnit": "pb",
        "IdP": "corp",
        "AccessRequest": str(grant.request_id),
    }
    row = SessionIssuance.objects.get(pk=issued.issuance_id)  # type: ignore[attr-defined]
    assert row.grant == grant and row.access == "grant"
    event = AuditEvent.objects.get(event_type="issuance.issued")
    assert event.data["request_id"] == grant.request_id
    assert event.data["grant_id"] == grant.pk


@pytest.mark.parametrize(
    ("requested", "grant_left", "chained", "expected"),
    [
        (None, None, False, timedelta(hours=4)),  # role max
        (timedelta(minutes=30), None, False, timedelta(minutes=30)),  # requested
        (None, timedelta(minutes=100), False, timedelta(minutes=100)),  # grant remaining
        (None, None, True, timedelta(hours=1)),  # role chaining
        (timedelta(hours=3), timedelta(hours=2), True, timedelta(hours=1)),
    ],
)
def test_duration_is_the_smallest_limit(
    requested: timedelta | None,
    grant_left: timedelta | None,
    chained: bool,
    expected: timedelta,
) -> None:
    now = timezone.now()
    assert (
        session_duration(
            role_max=timedelta(hours=4),
            requested=requested,
            grant_ends_at=now + grant_left if grant_left else None,
            chained=chained,
            now=now,
        )
        == expected
    )


def test_duration_below_sts_floor_is_refused_not_stretched() -> None:
    now = timezone.now()
    with pytest.raises(DurationTooShort, match="less than 15 minutes"):
        session_duration(
            role_max=timedelta(hours=4),
            requested=None,
            grant_ends_at=now + timedelta(minutes=14, seconds=59),
            chained=False,
            now=now,
        )


def test_chained_broker_sends_at_most_one_hour(
    world: World, broker: MotoServer, settings: SettingsWrapper
) -> None:
    settings.STS_BROKER_CHAINED = "true"
    broker.start_recording()
    _issue(world)
    assert broker.received("AssumeRole")[0]["DurationSeconds"] == "3600"


def test_broker_on_user_credentials_is_detected_as_not_chained(
    world: World, broker: MotoServer
) -> None:
    # moto's default caller is an IAM user: the role's own maximum applies.
    broker.start_recording()
    _issue(world, requested=timedelta(minutes=90))
    assert broker.received("AssumeRole")[0]["DurationSeconds"] == "5400"
    assert len(broker.received("GetCallerIdentity")) == 1
    _issue(world)
    assert len(broker.received("GetCallerIdentity")) == 1  # asked once per process


def test_grant_ending_in_under_fifteen_minutes_is_refused_without_calling_sts(
    world: World, broker: MotoServer
) -> None:
    _grant(world, ends_in=timedelta(minutes=10))
    broker.start_recording()
    with pytest.raises(DurationTooShort):
        _issue(world, account_id="222222222222", role="admin")
    assert broker.received("AssumeRole") == []
    event = AuditEvent.objects.get(event_type="issuance.refused")
    assert event.data["reason"] == "duration_too_short"
    assert not SessionIssuance.objects.exists()


def test_session_never_outlives_the_grant(world: World, broker: MotoServer) -> None:
    grant = _grant(world, ends_in=timedelta(minutes=40))
    issued = _issue(world, account_id="222222222222", role="admin")
    assert issued.expires_at <= grant.ends_at  # type: ignore[attr-defined]
    assert issued.duration <= timedelta(minutes=40)  # type: ignore[attr-defined]


def test_expired_grant_is_refused(world: World, broker: MotoServer) -> None:
    grant = _grant(world, ends_in=timedelta(hours=1))
    with pytest.raises(GrantRequired):
        _issue(
            world, account_id="222222222222", role="admin", now=grant.ends_at + timedelta(seconds=1)
        )


def test_revoked_grant_is_refused(world: World, broker: MotoServer) -> None:
    grant = _grant(world, ends_in=timedelta(hours=1))
    Grant.objects.filter(pk=grant.pk).update(state="revoked", revoked_at=timezone.now())
    with pytest.raises(GrantRequired):
        _issue(world, account_id="222222222222", role="admin")


def test_eligible_without_grant_is_refused_and_audited(world: World, broker: MotoServer) -> None:
    broker.start_recording()
    with pytest.raises(GrantRequired):
        _issue(world, account_id="222222222222", role="admin")
    assert broker.received("AssumeRole") == []
    event = AuditEvent.objects.get(event_type="issuance.refused")
    assert (event.data["reason"], event.data["access"]) == ("grant_required", "eligible")


def test_other_business_unit_is_refused_at_issuance(world: World, broker: MotoServer) -> None:
    with pytest.raises(NotEntitled):
        _issue(world, account_id=world.dw_dev.account_id)
    event = AuditEvent.objects.get(event_type="issuance.refused")
    assert event.account_id == "333333333333" and event.data["reason"] == "not_entitled"


def test_groups_lost_since_sign_in_refuse_issuance(world: World, broker: MotoServer) -> None:
    world.alice.directory_groups = []
    world.alice.save()
    with pytest.raises(NotEntitled):
        _issue(world)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"account_id": "12345"}, InvalidIssuanceRequest),
        ({"account_id": "111111111111\n"}, InvalidIssuanceRequest),
        ({"role": "cloud-eng\n"}, InvalidIssuanceRequest),
        ({"role": "Bad Role"}, InvalidIssuanceRequest),
        ({"kind": "shell"}, InvalidIssuanceRequest),
        ({"requested": timedelta(minutes=5)}, InvalidIssuanceRequest),
        ({"requested": timedelta(hours=13)}, InvalidIssuanceRequest),
    ],
)
def test_malformed_requests_are_refused_and_audited(
    world: World, broker: MotoServer, overrides: dict[str, object], problem: type[Exception]
) -> None:
    with pytest.raises(problem):
        _issue(world, **overrides)
    assert AuditEvent.objects.get(event_type="issuance.refused").data["reason"] == (
        "invalid_request"
    )


def test_identity_that_cannot_name_a_session_is_refused(world: World, broker: MotoServer) -> None:
    world.alice.email = "a" * 60 + "@corp.example"
    world.alice.save()
    broker.start_recording()
    with pytest.raises(IdentityNotExpressible):
        _issue(world)
    assert broker.received("AssumeRole") == []


def test_failover_moves_past_a_dead_endpoint_and_audits_the_region(
    world: World, broker: MotoServer, settings: SettingsWrapper
) -> None:
    settings.STS_ENDPOINTS = [f"eu-west-1={closed_port_url()}", f"eu-central-1={broker.url}"]

    issued = _issue(world)

    assert issued.region == "eu-central-1"  # type: ignore[attr-defined]
    identity = _sts_client_with(issued.credentials, broker.url).get_caller_identity()  # type: ignore[attr-defined]
    assert identity["Arn"].endswith(":assumed-role/cloud-eng/alice@corp.example")
    event = AuditEvent.objects.get(event_type="issuance.issued")
    assert event.data["region"] == "eu-central-1"
    [skipped] = event.data["failed_over"]
    assert skipped["region"] == "eu-west-1" and skipped["problem"].startswith("connection")


@pytest.mark.parametrize(
    ("status", "code"), [(503, "ServiceUnavailable"), (400, "Throttling"), (500, "InternalError")]
)
def test_failover_on_throttling_and_server_errors(
    world: World,
    broker: MotoServer,
    settings: SettingsWrapper,
    sts_error_endpoint: Callable[[int, str], ErrorEndpoint],
    status: int,
    code: str,
) -> None:
    failing = sts_error_endpoint(status, code)
    settings.STS_ENDPOINTS = [f"us-east-1={failing.url}", f"us-west-2={broker.url}"]
    settings.STS_BROKER_CHAINED = "false"

    issued = _issue(world)

    assert issued.region == "us-west-2"  # type: ignore[attr-defined]
    assert failing.hits == 1  # one attempt: failover is the retry
    event = AuditEvent.objects.get(event_type="issuance.issued")
    assert code in event.data["failed_over"][0]["problem"]


def test_sts_refusal_is_not_retried_elsewhere_and_is_audited(
    world: World,
    broker: MotoServer,
    settings: SettingsWrapper,
    sts_error_endpoint: Callable[[int, str], ErrorEndpoint],
) -> None:
    denying = sts_error_endpoint(403, "AccessDenied")
    settings.STS_ENDPOINTS = [f"us-east-1={denying.url}", f"us-west-2={broker.url}"]
    settings.STS_BROKER_CHAINED = "false"
    broker.start_recording()

    with pytest.raises(SessionRefusedByAws) as failure:
        _issue(world)

    assert failure.value.status == 502 and "AccessDenied" in failure.value.message
    assert broker.received("AssumeRole") == []
    event = AuditEvent.objects.get(event_type="issuance.failed")
    assert (event.data["reason"], event.data["sts_code"]) == ("sts_refused", "AccessDenied")
    assert not SessionIssuance.objects.exists()


def test_every_endpoint_down_is_a_503_failure_and_audited(
    world: World, broker: MotoServer, settings: SettingsWrapper
) -> None:
    settings.STS_ENDPOINTS = [closed_port_url(), closed_port_url()]
    settings.STS_BROKER_CHAINED = "false"
    with pytest.raises(StsUnreachable) as failure:
        _issue(world)
    assert failure.value.status == 503
    event = AuditEvent.objects.get(event_type="issuance.failed")
    assert event.data["reason"] == "sts_unavailable" and len(event.data["attempts"]) == 2


def test_endpoints_default_to_boto3_resolution_per_region(
    settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_STS", raising=False)
    settings.STS_REGIONS = ["eu-west-1", "eu-central-1", "eu-west-1"]
    settings.STS_ENDPOINTS = []
    sts.reset_clients()
    urls = [sts.client_for(e).meta.endpoint_url for e in sts.endpoints()]
    assert urls == ["https://sts.eu-west-1.amazonaws.com", "https://sts.eu-central-1.amazonaws.com"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    assert sts.client_for(sts.endpoints()[0]).meta.endpoint_url == "http://127.0.0.1:9"
    sts.reset_clients()


def test_clients_are_built_once_and_reused(world: World, broker: MotoServer) -> None:
    endpoint = sts.endpoints()[0]
    assert sts.client_for(endpoint) is sts.client_for(endpoint)


def test_demo_roles_trust_only_the_broker_and_require_source_identity(
    world: World, broker: MotoServer
) -> None:
    import json as _json

    from federation.management.commands.run_demo import DEMO_BROKER_ARN, create_demo_roles

    created = create_demo_roles()

    assert "arn:aws:iam::111111111111:role/cloud-eng" in created
    assert len(created) == 3 * 2  # three accounts, two logical roles
    session = sts.assume_role(
        sts.AssumeRoleRequest(
            role_arn="arn:aws:iam::111111111111:role/admin",
            session_name="probe",
            source_identity="probe",
            duration_seconds=900,
        )
    ).credentials
    iam = boto3.client(
        "iam",
        endpoint_url=broker.url,
        aws_access_key_id=session.access_key_id,
        aws_secret_access_key=session.secret_access_key,
        aws_session_token=session.session_token,
    )
    role = iam.get_role(RoleName="cloud-eng")["Role"]
    policy = role["AssumeRolePolicyDocument"]
    if isinstance(policy, str):
        policy = _json.loads(policy)
    statement = policy["Statement"][0]
    assert statement["Principal"] == {"AWS": DEMO_BROKER_ARN}
    assert set(statement["Action"]) == {
        "sts:AssumeRole",
        "sts:SetSourceIdentity",
        "sts:TagSession",
    }
    assert statement["Condition"]["Null"] == {"sts:SourceIdentity": "false"}
    assert role["MaxSessionDuration"] == 7200


def test_hostile_form_values_do_not_bloat_the_audit_log(world: World, broker: MotoServer) -> None:
    with pytest.raises(InvalidIssuanceRequest):
        _issue(world, account_id="1" * 5000, role="r" * 5000, kind="k" * 5000)
    event = AuditEvent.objects.get(event_type="issuance.refused")
    assert len(event.target) <= 100 and len(event.data["role"]) == 64
    assert event.account_id == ""
