"""The broker's own management sessions (revocation's IAM writes in a target account) go through
``federation.aws.sts``, with the same regional failover as issuance, against a moto server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import iam, sts
from tests.aws import MotoServer
from tests.issuance import ErrorEndpoint, closed_port_url

TARGET_ACCOUNT = "333333333333"
ROLE_ARN = f"arn:aws:iam::{TARGET_ACCOUNT}:role/admin"
MANAGEMENT_ARN = f"arn:aws:iam::{TARGET_ACCOUNT}:role/broker-management"
MOMENT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def management(aws: MotoServer, settings: SettingsWrapper) -> Iterator[MotoServer]:
    """Cross-account revocation configured, the target role created in its own account, and
    no cached STS client or management session left over from another test."""
    settings.IAM_MANAGEMENT_ROLE_NAME = "broker-management"
    settings.STS_REGIONS = ["eu-west-1"]
    settings.STS_ENDPOINTS = []
    settings.STS_BROKER_CHAINED = "false"
    sts.reset_clients()
    iam.reset_clients()
    _target_iam(aws.url).create_role(
        RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    yield aws
    sts.reset_clients()
    iam.reset_clients()


def _target_iam(url: str) -> Any:
    # The test's own way into the target account, independent of the code under test.
    credentials = boto3.client("sts", endpoint_url=url).assume_role(
        RoleArn=MANAGEMENT_ARN, RoleSessionName="test-setup"
    )["Credentials"]
    return boto3.client(
        "iam",
        endpoint_url=url,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def _revoke() -> None:
    iam.put_revocation_policy(
        ROLE_ARN, source_identity="rita@corp.example", issued_before=MOMENT, now=MOMENT
    )


def _denied_identities(url: str) -> list[str]:
    document = _target_iam(url).get_role_policy(RoleName="admin", PolicyName=iam.POLICY_NAME)
    return [
        statement["Condition"]["StringEquals"]["aws:SourceIdentity"]
        for statement in document["PolicyDocument"]["Statement"]
    ]


def test_management_assume_fails_over_past_a_dead_endpoint(
    management: MotoServer, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    # STS is reachable only through the configured endpoints, IAM only through its own.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", management.url)
    settings.STS_ENDPOINTS = [f"eu-west-1={closed_port_url()}", f"eu-central-1={management.url}"]
    management.start_recording()

    _revoke()

    [assumed] = management.received("AssumeRole")
    assert _denied_identities(management.url) == ["rita@corp.example"]
    assert assumed["RoleArn"] == MANAGEMENT_ARN
    assert assumed["RoleSessionName"] == iam.MANAGEMENT_SESSION_NAME
    # The broker acts for itself here, not for a person.
    assert "SourceIdentity" not in assumed


@pytest.mark.parametrize(
    ("status", "code"), [(503, "ServiceUnavailable"), (400, "Throttling"), (500, "InternalError")]
)
def test_management_assume_fails_over_on_throttling_and_server_errors(
    management: MotoServer,
    settings: SettingsWrapper,
    sts_error_endpoint: Callable[[int, str], ErrorEndpoint],
    status: int,
    code: str,
) -> None:
    failing = sts_error_endpoint(status, code)
    settings.STS_ENDPOINTS = [f"us-east-1={failing.url}", f"us-west-2={management.url}"]

    _revoke()

    assert failing.hits == 1  # one attempt: failover is the retry
    assert _denied_identities(management.url) == ["rita@corp.example"]


def test_management_assume_refusal_is_not_retried_elsewhere(
    management: MotoServer,
    settings: SettingsWrapper,
    sts_error_endpoint: Callable[[int, str], ErrorEndpoint],
) -> None:
    denying = sts_error_endpoint(403, "AccessDenied")
    settings.STS_ENDPOINTS = [f"us-east-1={denying.url}", f"us-west-2={management.url}"]
    management.start_recording()

    with pytest.raises(iam.IamCallFailed, match=r"cannot assume broker-management.*AccessDenied"):
        _revoke()

    assert management.received("AssumeRole") == []
    assert _target_iam(management.url).list_role_policies(RoleName="admin")["PolicyNames"] == []


def test_management_assume_with_every_endpoint_down_is_a_retryable_iam_failure(
    management: MotoServer, settings: SettingsWrapper
) -> None:
    settings.STS_ENDPOINTS = [closed_port_url(), closed_port_url()]

    with pytest.raises(iam.IamCallFailed, match="no STS endpoint answered"):
        _revoke()


def test_management_session_is_reused_across_calls(
    management: MotoServer, settings: SettingsWrapper
) -> None:
    management.start_recording()

    _revoke()
    assert [r.source_identity for r in iam.list_revocations(ROLE_ARN)] == ["rita@corp.example"]

    assert len(management.received("AssumeRole")) == 1


def test_iam_and_management_sessions_take_their_region_from_settings_not_the_environment(
    management: MotoServer, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    settings.STS_REGIONS = ["eu-central-1", "eu-west-1"]
    management.start_recording()

    _revoke()

    assert management.signing_regions("AssumeRole") == ["eu-central-1"]
    assert set(management.signing_regions("PutRolePolicy")) == {"eu-central-1"}
