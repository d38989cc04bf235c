from __future__ import annotations

import boto3

from tests.aws import MotoServer


def test_boto3_reaches_the_local_moto_server_through_standard_configuration(
    aws: MotoServer,
) -> None:
    iam = boto3.client("iam")
    iam.create_role(RoleName="probe", AssumeRolePolicyDocument="{}")
    assert iam.meta.endpoint_url == aws.url
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["probe"]
