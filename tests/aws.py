"""A real moto server over HTTP on a free loopback port: STS and IAM for issuance tests.

boto3 finds it through its standard AWS_ENDPOINT_URL variable, exactly as a deployment would
point at a regional or private endpoint; no project-specific switch exists.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest
import requests

# moto's request recorder (what the server received) writes here; it reads the variable when
# moto is first imported, so this comes before that import.
os.environ.setdefault(
    "MOTO_RECORDER_FILEPATH",
    os.path.join(tempfile.gettempdir(), f"moto-recording-{os.getpid()}.jsonl"),
)

from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MotoServer:
    url: str

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def start_recording(self) -> None:
        """Record every request the server receives from now on (see ``received``)."""
        for step in ("stop-recording", "reset-recording", "start-recording"):
            requests.post(f"{self.url}/moto-api/recorder/{step}", timeout=10).raise_for_status()

    def received(self, action: str) -> list[dict[str, str]]:
        """The form parameters of each recorded request for a query-protocol ``action``
        (e.g. "AssumeRole"), in arrival order, exactly as the server received them."""
        return [params for _, params in self._recorded(action)]

    def actions(self) -> list[str]:
        """Every recorded query-protocol action, in arrival order."""
        response = requests.get(f"{self.url}/moto-api/recorder/download-recording", timeout=10)
        response.raise_for_status()
        found = []
        for line in response.text.splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            action = dict(parse_qsl(body, keep_blank_values=True)).get("Action")
            if action:
                found.append(action)
        return found

    def signing_regions(self, action: str) -> list[str]:
        """The SigV4 region each recorded ``action`` request was signed for, in arrival order."""
        regions = []
        for headers, _ in self._recorded(action):
            # Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/...
            scope = headers.get("Authorization", "").partition("Credential=")[2]
            regions.append(scope.split("/")[2] if scope.count("/") >= 3 else "")
        return regions

    def _recorded(self, action: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        response = requests.get(f"{self.url}/moto-api/recorder/download-recording", timeout=10)
        response.raise_for_status()
        found = []
        for line in response.text.splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            params = dict(parse_qsl(body, keep_blank_values=True))
            if params.get("Action") == action:
                found.append((dict(entry.get("headers") or {}), params))
        return found


def caller_arn(url: str, credentials: Mapping[str, Any]) -> str:
    """The ARN STS (at ``url``) names for ``credential_process``-shaped credentials."""
    client = boto3.client(
        "sts",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    return str(client.get_caller_identity()["Arn"])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        yield MotoServer(url)
    finally:
        server.stop()
        if os.path.exists(os.environ["MOTO_RECORDER_FILEPATH"]):
            os.remove(os.environ["MOTO_RECORDER_FILEPATH"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[MotoServer]:
    """A moto server with empty state for this test."""
    moto_server.reset()
    yield moto_server
    moto_server.reset()
    requests.post(f"{moto_server.url}/moto-api/recorder/stop-recording", timeout=10)


def account_client(url: str, account_id: str, service: str = "iam") -> Any:
    """A boto3 client acting inside ``account_id`` (moto: credentials from AssumeRole into an
    account act in that account): the test's own way in, independent of the code under test,
    the way a person with console access would make changes by hand."""
    credentials = boto3.client("sts", endpoint_url=url, region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/test-operator", RoleSessionName="test-operator"
    )["Credentials"]
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
