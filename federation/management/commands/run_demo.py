"""``manage.py run_demo [ADDR:PORT]``: the demo with a local STS (SPEC §6).

Starts moto's server on a loopback port, points boto3 at it (AWS_ENDPOINT_URL, throwaway keys,
so no real AWS account is ever touched), creates every account's IAM roles there with the
trust policy docs/issuance.md recommends, then runs the development server in this process.
Console links go to the demo federation stand-in (``/demo-federation/``). DEMO_MODE only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

import boto3
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from federation.aws import iam, sts
from federation.models import Account, AccountRole, LogicalRole

DEMO_BROKER_ARN = "arn:aws:iam::123456789012:user/moto"


def trust_policy(broker_arn: str) -> dict[str, Any]:
    """Trust only the broker, only with a SourceIdentity, and only our session tag keys
    (the policy docs/issuance.md recommends for every target role)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FedaccessBrokerOnlyWithSourceIdentity",
                "Effect": "Allow",
                "Principal": {"AWS": broker_arn},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                "Condition": {
                    "Null": {"sts:SourceIdentity": "false"},
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": [
                            "BusinessUnit",
                            "IdP",
                            "AccessRequest",
                            "MFA",
                            "BreakGlass",
                        ]
                    },
                },
            }
        ],
    }


def create_demo_roles(broker_arn: str = DEMO_BROKER_ARN) -> list[str]:
    """Create each account's IAM roles in the local STS/IAM; returns the role ARNs created."""
    overrides = {
        (o.account_id, o.role_id): o for o in AccountRole.objects.select_related("account", "role")
    }
    roles = list(LogicalRole.objects.order_by("name"))
    created = []
    for account in Account.objects.order_by("account_id"):
        # moto keeps one IAM per account; credentials of a role session in an account act
        # there, so the broker "assumes" a bootstrap role in each account to create its roles.
        bootstrap = sts.assume_management_role(
            f"arn:aws:iam::{account.account_id}:role/demo-bootstrap", session_name="run_demo"
        )
        account_iam = boto3.client(
            "iam",
            region_name=bootstrap.region,
            aws_access_key_id=bootstrap.credentials.access_key_id,
            aws_secret_access_key=bootstrap.credentials.secret_access_key,
            aws_session_token=bootstrap.credentials.session_token,
        )
        for role in roles:
            override = overrides.get((account.pk, role.pk))
            arn = (override.role_arn if override else "") or account.default_role_arn(role.name)
            max_session = (override.max_session if override else None) or role.max_session
            account_iam.create_role(
                RoleName=arn.rsplit("/", 1)[-1],
                AssumeRolePolicyDocument=json.dumps(trust_policy(broker_arn)),
                MaxSessionDuration=max(3600, int(max_session.total_seconds())),
                Description=f"{role.name} in {account.alias} (fedaccess demo)",
            )
            created.append(arn)
    return created


def aws_cli_hint(portal_url: str, sts_url: str) -> str:
    """How a person points the fedaccess client and the AWS CLI at this demo (printed at start):
    the credentials come from the local STS, so AWS calls must go there too."""
    return (
        "To use the demo from the AWS CLI:\n"
        f"  fedaccess login --url {portal_url}     # confirm its code at {portal_url}/device/\n"
        "  fedaccess config                                 # profiles in ~/.aws/config\n"
        f"  export AWS_ENDPOINT_URL={sts_url}      # the demo's local STS and IAM\n"
        "  aws sts get-caller-identity --profile pb-dev.cloud-eng\n"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Command(BaseCommand):
    help = "Run the demo: a local STS (moto) on loopback, the demo IAM roles, the dev server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument(
            "--sts-port", type=int, default=0, help="the local STS's port (default: a free one)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_MODE:
            raise CommandError("run_demo runs only with DEMO_MODE=1.")
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:
            raise CommandError("run_demo needs moto[server] (uv sync installs it).") from error
        port = options["sts_port"] or _free_port()
        # moto's request log would drown the portal's own.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        url = f"http://127.0.0.1:{port}"
        # Everything AWS goes to the local server with throwaway keys, whatever the shell has.
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM"):
            os.environ[name] = url
        os.environ["AWS_ACCESS_KEY_ID"] = "demo"  # moto accepts any key
        os.environ["AWS_SECRET_ACCESS_KEY"] = "demo"  # noqa: S105 - not a secret
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        settings.STS_ENDPOINTS = []
        # Revocation edits roles in each account's own IAM, as the roles were created above.
        settings.IAM_MANAGEMENT_ROLE_NAME = settings.IAM_MANAGEMENT_ROLE_NAME or "demo-bootstrap"
        sts.reset_clients()
        iam.reset_clients()
        try:
            roles = create_demo_roles()
            self.stdout.write(
                f"Local STS and IAM (moto) at {url}: {len(roles)} demo roles created.\n"
                f"Console links go to {settings.AWS_FEDERATION_URL}\n"
                + aws_cli_hint(settings.BASE_URL, url)
            )
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            server.stop()
