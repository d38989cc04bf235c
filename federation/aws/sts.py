"""The one place that calls AWS STS and builds console sign-in links (SPEC §4 Issuance).

Three callers, one failover: the broker's AssumeRole for a person (``assume_role``), the
broker's own management sessions (``assume_management_role``: revocation's IAM writes in a
target account, the demo's role bootstrap) and console links (``console_link``).

An adapter: it turns our typed requests into STS calls and STS answers (or failures) into our
types, and decides nothing about who may have what. ``federation.issuance.service`` decides.

Endpoints: one per ``STS_REGIONS`` entry, in order, resolved by boto3 itself (so the standard
``AWS_ENDPOINT_URL_STS`` / ``AWS_ENDPOINT_URL`` apply, else the regional
``https://sts.<region>.amazonaws.com``), or the explicit ``STS_ENDPOINTS`` list when set. A
connection failure, throttling or a 5xx moves on to the next endpoint; anything else is STS's
answer and is reported as such. boto3 clients are built once per (region, endpoint) and
reused: building one costs milliseconds, a new boto3 Session tens of them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from federation.observability import metrics

# Failover is our retry: one attempt per endpoint, and short timeouts so a dead region costs
# little before the next one is tried.
_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"total_max_attempts": 1, "mode": "standard"},
)
_FEDERATION_TIMEOUT = (2, 5)

_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
# A region not enabled in the account answers this; another region may well work.
_REGIONAL_CODES = frozenset({"RegionDisabledException"})


@dataclass(frozen=True)
class Endpoint:
    region: str
    url: str | None  # None: boto3 resolves it (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, regional)


@dataclass(frozen=True)
class Credentials:
    """Temporary credentials. ``repr`` hides the secrets so they cannot leak through a log."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime

    def credential_process(self) -> dict[str, Any]:
        """The AWS CLI ``credential_process`` shape."""
        return {
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": self.expiration.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


@dataclass(frozen=True)
class AssumeRoleRequest:
    role_arn: str
    session_name: str
    source_identity: str
    duration_seconds: int
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Attempt:
    """One endpoint tried and why it was passed over."""

    region: str
    endpoint: str
    problem: str


@dataclass(frozen=True)
class AssumedSession:
    credentials: Credentials
    assumed_role_arn: str
    region: str
    endpoint: str
    aws_request_id: str
    attempts: tuple[Attempt, ...] = ()  # endpoints that failed before this one answered


class StsError(Exception):
    """STS could not give us a session. ``attempts`` lists every endpoint tried."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = tuple(attempts)


class StsUnavailable(StsError):
    """Every endpoint failed (connection, throttling, 5xx): try again later."""


class StsRefused(StsError):
    """An endpoint answered and refused (AccessDenied, ValidationError, ...)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        region: str,
        endpoint: str,
        aws_request_id: str = "",
        attempts: Sequence[Attempt] = (),
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.code = code
        self.region = region
        self.endpoint = endpoint
        self.aws_request_id = aws_request_id


class ConsoleLinkFailed(StsError):
    """The federation endpoint did not return a sign-in token."""


def _regions() -> list[str]:
    return list(settings.STS_REGIONS) or ["us-east-1"]


def endpoints() -> list[Endpoint]:
    """The STS endpoints to try, in order."""
    regions = _regions()
    if settings.STS_ENDPOINTS:
        result = []
        for index, item in enumerate(settings.STS_ENDPOINTS):
            region, sep, url = item.partition("=")
            if not sep:
                region, url = regions[min(index, len(regions) - 1)], item
            result.append(Endpoint(region.strip(), url.strip()))
        return result
    return [Endpoint(region, None) for region in dict.fromkeys(regions)]


def home_region() -> str:
    """The first configured region: where region-less AWS clients (IAM is global) sign."""
    return _regions()[0]


_clients: dict[tuple[str, str | None, str | None, str | None], Any] = {}
_clients_lock = threading.Lock()
_chained: bool | None = None


def _client(endpoint: Endpoint) -> Any:
    # boto3 reads AWS_ENDPOINT_URL* when it builds the client: key on them so a change (tests,
    # the demo) gets a fresh client instead of one pointing at the old place.
    key = (
        endpoint.region,
        endpoint.url,
        os.environ.get("AWS_ENDPOINT_URL_STS"),
        os.environ.get("AWS_ENDPOINT_URL"),
    )
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                # boto3 Sessions are not thread-safe; each client gets its own, built under
                # the lock. The clients themselves are thread-safe.
                client = boto3.session.Session().client(
                    "sts",
                    region_name=endpoint.region,
                    endpoint_url=endpoint.url,
                    config=_CLIENT_CONFIG,
                )
                _clients[key] = client
    return client


def client_for(endpoint: Endpoint) -> Any:
    """The cached boto3 STS client for one endpoint (tests hook its events)."""
    return _client(endpoint)


def reset_clients() -> None:
    """Forget cached clients and the chaining answer (tests, credential rotation)."""
    global _chained
    with _clients_lock:
        _clients.clear()
        _chained = None


def _failover_problem(error: Exception) -> str | None:
    """Why this error means "try the next endpoint", or None if it is STS's real answer."""
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return f"connection: {type(error).__name__}"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _THROTTLING_CODES:
            return f"throttled: {code}"
        if status >= 500:
            return f"server error {status}: {code}"
        if code in _REGIONAL_CODES:
            return f"region: {code}"
        return None
    if isinstance(error, BotoCoreError):
        return f"client: {type(error).__name__}"
    return None


def _call(
    operation: str, params: dict[str, Any]
) -> tuple[dict[str, Any], Endpoint, str, list[Attempt]]:
    attempts: list[Attempt] = []
    for endpoint in endpoints():
        client = _client(endpoint)
        url = str(client.meta.endpoint_url)
        started = time.perf_counter()
        try:
            response: dict[str, Any] = getattr(client, operation)(**params)
        except (BotoCoreError, ClientError) as error:
            problem = _failover_problem(error)
            outcome = "refused" if problem is None else "failover"
            metrics.record_sts_call(
                operation=operation,
                region=endpoint.region,
                outcome=outcome,
                seconds=time.perf_counter() - started,
            )
            if problem is not None:
                metrics.record_sts_failover(region=endpoint.region, problem=problem)
                attempts.append(Attempt(endpoint.region, url, problem))
                continue
            assert isinstance(error, ClientError)
            details = error.response.get("Error", {})
            raise StsRefused(
                str(details.get("Message") or details.get("Code") or "refused"),
                code=str(details.get("Code", "")),
                region=endpoint.region,
                endpoint=url,
                aws_request_id=str(error.response.get("ResponseMetadata", {}).get("RequestId", "")),
                attempts=attempts,
            ) from None
        metrics.record_sts_call(
            operation=operation,
            region=endpoint.region,
            outcome="ok",
            seconds=time.perf_counter() - started,
        )
        return response, endpoint, url, attempts
    raise StsUnavailable("no STS endpoint answered", attempts=attempts)


def assume_role(request: AssumeRoleRequest) -> AssumedSession:
    """AssumeRole from the broker principal, failing over between endpoints.

    Raises StsRefused when an endpoint answers with a refusal, StsUnavailable when none answers.
    """
    params: dict[str, Any] = {
        "RoleArn": request.role_arn,
        "RoleSessionName": request.session_name,
        "SourceIdentity": request.source_identity,
        "DurationSeconds": request.duration_seconds,
    }
    if request.tags:
        params["Tags"] = [{"Key": key, "Value": value} for key, value in request.tags]
    return _assumed(*_call("assume_role", params))


def assume_management_role(
    role_arn: str, *, session_name: str, duration_seconds: int = 900
) -> AssumedSession:
    """AssumeRole into a role the broker itself acts through (the IAM management role of a
    target account; the demo's bootstrap role), failing over between endpoints like
    ``assume_role``.

    No SourceIdentity and no tags: the session acts for the broker, not for a person. The
    default 900 seconds is STS's minimum: management work is a few IAM calls.
    Raises StsRefused or StsUnavailable as ``assume_role`` does.
    """
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name,
        "DurationSeconds": duration_seconds,
    }
    return _assumed(*_call("assume_role", params))


def _assumed(
    response: dict[str, Any], endpoint: Endpoint, url: str, attempts: list[Attempt]
) -> AssumedSession:
    raw = response["Credentials"]
    expiration = raw["Expiration"]
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    return AssumedSession(
        credentials=Credentials(
            access_key_id=raw["AccessKeyId"],
            secret_access_key=raw["SecretAccessKey"],
            session_token=raw["SessionToken"],
            expiration=expiration,
        ),
        assumed_role_arn=str(response.get("AssumedRoleUser", {}).get("Arn", "")),
        region=endpoint.region,
        endpoint=url,
        aws_request_id=str(response.get("ResponseMetadata", {}).get("RequestId", "")),
        attempts=tuple(attempts),
    )


def broker_is_chained() -> bool:
    """Whether the broker's own credentials are a role session (role chaining caps sessions at
    one hour). ``STS_BROKER_CHAINED`` answers it, or one GetCallerIdentity per process."""
    global _chained
    configured = settings.STS_BROKER_CHAINED
    if configured != "auto":
        return bool(configured == "true")
    if _chained is None:
        response, _, _, _ = _call("get_caller_identity", {})
        _chained = ":assumed-role/" in str(response.get("Arn", ""))
    return _chained


def caller_identity(credentials: Credentials) -> str:
    """The ARN STS names for ``credentials`` (the demo federation stand-in checks sessions)."""
    endpoint = endpoints()[0]
    client = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
    ).client("sts", region_name=endpoint.region, endpoint_url=endpoint.url, config=_CLIENT_CONFIG)
    return str(client.get_caller_identity()["Arn"])


def console_destination(region: str) -> str:
    return f"https://{region}.console.aws.amazon.com/console/home?region={region}"


_http = requests.Session()


def console_link(credentials: Credentials, *, region: str) -> str:
    """A console sign-in URL for the session: getSigninToken, then the login URL.

    No SessionDuration is sent: with AssumeRole credentials the console session follows the
    DurationSeconds the session was issued with (IAM UG, custom identity broker), which is
    already capped by the issuance rules. The URL is a bearer login: never log it.
    """
    base = settings.AWS_FEDERATION_URL
    session_json = json.dumps(
        {
            "sessionId": credentials.access_key_id,
            "sessionKey": credentials.secret_access_key,
            "sessionToken": credentials.session_token,
        }
    )
    try:
        response = _http.get(
            base,
            params={"Action": "getSigninToken", "Session": session_json},
            timeout=_FEDERATION_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as error:
        raise ConsoleLinkFailed(
            f"federation endpoint unreachable: {type(error).__name__}"
        ) from None
    if response.status_code != 200:
        raise ConsoleLinkFailed(f"federation endpoint answered HTTP {response.status_code}")
    try:
        token = response.json()["SigninToken"]
    except (ValueError, KeyError, TypeError):
        raise ConsoleLinkFailed("federation endpoint returned no SigninToken") from None
    if not isinstance(token, str) or not token:
        raise ConsoleLinkFailed("federation endpoint returned no SigninToken")
    query = urlencode(
        {
            "Action": "login",
            "Issuer": settings.BASE_URL,
            "Destination": console_destination(region),
            "SigninToken": token,
        }
    )
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{query}"
