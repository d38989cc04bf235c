"""Fixtures for the production tests: a RabbitMQ virtual host of this run's own, the service's
processes (always killed afterwards), the data both tests sign in against, and the sinks."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.models import Access, IdentityProvider
from tests.access_requests.live import mail_sink, webhook_sink, worker_database_url
from tests.edge.conftest import REDIS_URL
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
)
from tests.production.served import BASE_URL, ROOT, Served, service_env, start
from tests.saml_idp import PysamlIdp, cached_key_pair, register_signer

__all__ = ["mail_sink", "webhook_sink"]


def _rabbitmqctl(*args: str) -> None:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        raise RuntimeError("rabbitmqctl is missing: the production tests need RabbitMQ")
    subprocess.run([tool, "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A virtual host of this run's own on the machine's RabbitMQ, so parallel runs never
    share a queue; deleted afterwards with everything in it."""
    vhost = f"fedaccess-test-{secrets.token_hex(4)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def processes() -> Iterator[list[Served]]:
    """Every process a test starts goes here and is killed (with its group) at the end."""
    started: list[Served] = []
    yield started
    for served in started:
        served.kill()


@pytest.fixture
def launch(processes: list[Served], tmp_path: Path) -> Callable[..., Served]:
    def run(role: str, env: dict[str, str], *args: str, port: int = 0) -> Served:
        served = start(role, env, tmp_path, *args, port=port)
        processes.append(served)
        return served

    return run


@dataclass
class Deployment:
    signer: PysamlIdp
    idp: IdentityProvider
    env: dict[str, str]


@pytest.fixture
def deployment(
    transactional_db: None,
    settings: SettingsWrapper,
    tmp_path: Path,
    rabbitmq_url: str,
) -> Deployment:
    """Committed data the service processes see: one business unit with a dev account, a
    standing role and an eligible one, and the pysaml2 IdP registered for BASE_URL."""
    settings.BASE_URL = BASE_URL  # the SP metadata the IdP learns names the public URL
    pb = BusinessUnitFactory(
        slug="pb", name="Personal Banking", approver_groups=["aws-pb-managers"]
    )
    AccountFactory(account_id="111111111111", alias="pb-dev", business_unit=pb, region="eu-west-1")
    cloud_eng = LogicalRoleFactory(name="cloud-eng", max_session=timedelta(hours=1))
    admin = LogicalRoleFactory(name="admin", max_session=timedelta(hours=1), privileged=True)
    GroupMappingFactory(group="aws-pb-cloud-eng", role=cloud_eng, business_unit=pb)
    GroupMappingFactory(
        group="aws-pb-admin",
        role=admin,
        business_unit=pb,
        access=Access.ELIGIBLE,
        max_grant=timedelta(hours=2),
    )
    key_pem, cert_pem = cached_key_pair("corp")
    signer = PysamlIdp(
        entity_id="https://corp.idp.test/saml",
        workdir=tmp_path / "idp",
        key_pem=key_pem,
        cert_pem=cert_pem,
        sso_url="https://corp.idp.test/sso",
    )
    idp = register_signer("corp", signer)
    env = service_env(
        DATABASE_URL=worker_database_url(),
        SECRET_KEY=secrets.token_urlsafe(50),
        CELERY_BROKER_URL=rabbitmq_url,
        RATE_LIMIT_CACHE_URL=REDIS_URL,
        RATE_LIMIT_CACHE_PREFIX=f"t{secrets.token_hex(6)}",
        # Sessions in Redis, as docs/production.md says to run it.
        SESSION_CACHE_URL=REDIS_URL,
        SESSION_CACHE_PREFIX=f"s{secrets.token_hex(6)}",
        STATIC_ROOT=str(tmp_path / "static"),
        BEAT_SCHEDULE_FILE=str(tmp_path / "beat-schedule"),
    )
    return Deployment(signer, idp, env)


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A management command as an operator runs it next to the service."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
