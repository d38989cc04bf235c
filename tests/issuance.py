"""Fixtures for issuance tests: a small world of business units, accounts, roles and people, the
broker pointed at the moto server, and loopback HTTP servers that answer like a failing STS."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import sts
from federation.models import Access, Account, BusinessUnit, IdentityProvider, LogicalRole, User
from tests.aws import MotoServer, free_port
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    IdentityProviderFactory,
    LogicalRoleFactory,
    UserFactory,
)


@dataclass
class World:
    pb: BusinessUnit
    dw: BusinessUnit
    pb_dev: Account
    pb_prod: Account
    dw_dev: Account
    cloud_eng: LogicalRole
    admin: LogicalRole
    idp: IdentityProvider
    alice: User  # pb cloud-eng (standing), pb admin in prod (eligible)
    dora: User  # dw cloud-eng (standing)


@pytest.fixture
def world(db: None) -> World:
    pb = BusinessUnitFactory(slug="pb", name="Personal Banking")
    dw = BusinessUnitFactory(slug="dw", name="Data Warehouse")
    pb_dev = AccountFactory(
        account_id="111111111111", alias="pb-dev", business_unit=pb, region="eu-west-1"
    )
    pb_prod = AccountFactory(
        account_id="222222222222", alias="pb-prod", business_unit=pb, environment="prod"
    )
    dw_dev = AccountFactory(account_id="333333333333", alias="dw-dev", business_unit=dw)
    cloud_eng = LogicalRoleFactory(name="cloud-eng", max_session=timedelta(hours=2))
    admin = LogicalRoleFactory(name="admin", max_session=timedelta(hours=4), privileged=True)
    GroupMappingFactory(group="aws-pb-cloud-eng", role=cloud_eng, business_unit=pb)
    GroupMappingFactory(group="aws-dw-cloud-eng", role=cloud_eng, business_unit=dw)
    GroupMappingFactory(
        group="aws-pb-admin",
        role=admin,
        business_unit=pb,
        environments=["prod"],
        access=Access.ELIGIBLE,
        max_grant=timedelta(hours=4),
    )
    idp = IdentityProviderFactory(slug="corp")
    signed_in = timezone.now()
    alice = UserFactory(
        username="alice",
        email="alice@corp.example",
        idp=idp,
        directory_groups=["aws-pb-admin", "aws-pb-cloud-eng"],
        last_login=signed_in,
    )
    dora = UserFactory(
        username="dora",
        email="dora@corp.example",
        idp=idp,
        directory_groups=["aws-dw-cloud-eng"],
        last_login=signed_in,
    )
    return World(pb, dw, pb_dev, pb_prod, dw_dev, cloud_eng, admin, idp, alice, dora)


@pytest.fixture
def broker(aws: MotoServer, settings: SettingsWrapper) -> Iterator[MotoServer]:
    """The broker's STS calls go to the moto server through boto3's standard AWS_ENDPOINT_URL;
    fresh boto3 clients for each test."""
    settings.STS_REGIONS = ["eu-west-1"]
    settings.STS_ENDPOINTS = []
    settings.STS_BROKER_CHAINED = "auto"
    sts.reset_clients()
    yield aws
    sts.reset_clients()


class _StsErrorHandler(BaseHTTPRequestHandler):
    status = 503
    code = "ServiceUnavailable"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits += 1  # type: ignore[attr-defined]
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{self.code}</Code>"
            f"<Message>{self.code} from a test endpoint</Message></Error>"
            "<RequestId>test-request</RequestId></ErrorResponse>"
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class ErrorEndpoint:
    url: str
    server: ThreadingHTTPServer

    @property
    def hits(self) -> int:
        return int(self.server.hits)  # type: ignore[attr-defined]


@pytest.fixture
def sts_error_endpoint() -> Iterator[Callable[[int, str], ErrorEndpoint]]:
    """Start loopback HTTP servers that answer every STS call with (status, error code)."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, code: str) -> ErrorEndpoint:
        handler = type("Handler", (_StsErrorHandler,), {"status": status, "code": code})
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        server.hits = 0  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return ErrorEndpoint(f"http://127.0.0.1:{server.server_address[1]}", server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"
