from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from federation.models import Access
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_portal_requires_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_portal_lists_own_business_unit_grouped_by_environment(client: Client) -> None:
    pb = BusinessUnitFactory(slug="pb", name="Personal Banking")
    dw = BusinessUnitFactory(slug="dw", name="Data Warehouse")
    AccountFactory(alias="pb-dev", business_unit=pb, environment="dev")
    AccountFactory(alias="pb-prod", business_unit=pb, environment="prod")
    AccountFactory(alias="dw-dev", business_unit=dw, environment="dev")
    role = LogicalRoleFactory(name="cloud-eng")
    GroupMappingFactory(group="aws-pb-cloud-eng", role=role, business_unit=pb)
    GroupMappingFactory(group="aws-dw-cloud-eng", role=role, business_unit=dw)
    GroupMappingFactory(
        group="aws-pb-admin",
        role=LogicalRoleFactory(name="admin"),
        business_unit=pb,
        environments=["prod"],
        access=Access.ELIGIBLE,
    )
    client.force_login(UserFactory(directory_groups=["aws-pb-cloud-eng", "aws-pb-admin"]))

    response = client.get("/")

    body = response.content.decode()
    assert response.status_code == 200
    assert 'Personal Banking <span class="muted">(pb)</span></h2>' in body  # named, not a slug
    assert "pb-dev" in body and "pb-prod" in body
    assert "dw-dev" not in body and "Data Warehouse" not in body
    assert body.index("<h3>dev</h3>") < body.index("<h3>prod</h3>")
    assert "eligible" in body
    assert response["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_portal_says_so_when_the_user_has_no_access(client: Client) -> None:
    client.force_login(UserFactory(directory_groups=["unmapped"]))
    assert "no access to any AWS account" in client.get("/").content.decode()


def test_logout_is_post_only_and_flushes_the_session(client: Client) -> None:
    client.force_login(UserFactory())
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_healthz_answers_without_the_database(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_reports_eager_tasks(client: Client) -> None:
    body = client.get("/readyz").json()
    assert body["checks"]["database"] == "ok"
    assert body["status"] == "ok"
    assert body["checks"]["broker"] == "eager (no broker configured)"


@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
def test_readyz_fails_when_the_configured_broker_is_down(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "unreachable"


@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/15")
def test_readyz_passes_with_a_live_broker(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()


def test_service_refuses_to_start_without_secret_key_when_not_debugging() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DEMO_MODE"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
