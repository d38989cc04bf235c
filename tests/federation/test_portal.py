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


def test_signing_out_says_so(client: Client) -> None:
    client.force_login(UserFactory())
    page = client.post("/logout/", follow=True)
    assert page.redirect_chain[-1][0] == "/login/"
    assert "You are signed out of the portal." in page.content.decode()


def many_accounts(count: int = 12) -> object:
    """A person reaching ``count`` dev accounts and one prod account of Personal Banking."""
    pb = BusinessUnitFactory(slug="pb", name="Personal Banking")
    for n in range(count):
        AccountFactory(alias=f"pb-dev-{n:02}", business_unit=pb, environment="dev")
    AccountFactory(alias="pb-prod", account_id="222222222222", business_unit=pb, environment="prod")
    GroupMappingFactory(
        group="eng",
        role=LogicalRoleFactory(name="cloud-eng", max_session="2:00:00"),
        business_unit=pb,
    )
    return UserFactory(directory_groups=["eng"])


def test_many_accounts_can_be_searched_and_filtered(client: Client) -> None:
    client.force_login(many_accounts())
    everything = client.get("/").content.decode()
    assert 'role="search"' in everything and "Showing 13 of 13" in everything

    found = client.get("/", {"q": "DEV-07 cloud"}).content.decode()
    assert "pb-dev-07" in found and "pb-dev-08" not in found and "Showing 1 of 13" in found
    by_unit_name = client.get("/", {"q": "banking", "env": "prod"}).content.decode()
    assert "pb-prod" in by_unit_name and "pb-dev-00" not in by_unit_name
    nothing = client.get("/", {"q": "nope"}).content.decode()
    assert "Nothing matches “nope”" in nothing
    assert "no access to any AWS account" not in nothing
    hostile = client.get("/", {"q": "<script>x</script>", "env": "qa"})
    assert hostile.status_code == 200 and "<script>x</script>" not in hostile.content.decode()


def test_a_few_accounts_need_no_search(client: Client) -> None:
    client.force_login(many_accounts(count=2))
    assert 'role="search"' not in client.get("/").content.decode()


def test_the_session_length_can_be_chosen_up_to_the_roles_limit(client: Client) -> None:
    client.force_login(many_accounts(count=1))
    body = client.get("/", {"q": "pb-prod"}).content.decode()
    lengths = body.split('name="duration_minutes"', 1)[1].split("</select>", 1)[0]
    values = [chunk.split('"', 1)[0] for chunk in lengths.split('value="')[1:]]
    assert values == ["15", "30", "60", "120"]
    assert '<option value="120" selected>2 h</option>' in lengths


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
