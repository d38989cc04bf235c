"""The development IdP: demo mode only, and its responses pass the same ACS as any IdP's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.demo import idp as dev_idp
from federation.models import AuditEvent, IdentityProvider, SignIn, User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_mode(settings: Any, tmp_path: Path) -> None:
    settings.DEMO_MODE = True
    settings.DEMO_IDP_KEY_DIR = str(tmp_path / "demo-idp")


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


@pytest.mark.urls("tests.demo_urls")
def test_demo_user_signs_in_through_the_development_idp(demo_mode: None, client: Client) -> None:
    call_command("demo_idp", stdout=None)
    idp = IdentityProvider.objects.get(slug="demo")
    assert idp.entity_id == "urn:fedaccess:demo-idp"
    alice = UserFactory(
        idp=idp, subject="demo-alice", email="alice@demo.example", directory_groups=["aws-pb-dev"]
    )

    to_idp = client.get("/saml/demo/login/?next=/requests/")
    assert to_idp.status_code == 302 and to_idp["Location"].startswith(
        "http://127.0.0.1:8000/demo-idp/sso/?"
    )
    chooser = client.get(to_idp["Location"].removeprefix("http://127.0.0.1:8000"))
    assert chooser.status_code == 200 and "alice@demo.example" in chooser.content.decode()
    html = chooser.content.decode()
    posted = client.post(
        "/demo-idp/sso/",
        {
            "SAMLRequest": _hidden(html, "SAMLRequest"),
            "RelayState": _hidden(html, "RelayState"),
            "user": alice.pk,
        },
    )
    assert posted.status_code == 200
    page = posted.content.decode()
    assert 'action="http://127.0.0.1:8000/saml/demo/acs/"' in page
    answer = client.post(
        "/saml/demo/acs/",
        {"SAMLResponse": _hidden(page, "SAMLResponse"), "RelayState": _hidden(page, "RelayState")},
    )
    assert answer.status_code == 302, answer.content.decode()[-500:]
    assert answer["Location"] == "/requests/"
    assert client.session["_auth_user_id"] == str(alice.pk)
    alice.refresh_from_db()
    assert alice.directory_groups == ["aws-pb-dev"]
    assert User.objects.count() == 1


@pytest.mark.urls("tests.demo_urls")
@pytest.mark.parametrize(("step_up", "mfa"), [("", False), ("1", True)])
def test_the_development_idp_asserts_mfa_after_a_step_up_request(
    demo_mode: None, client: Client, step_up: str, mfa: bool
) -> None:
    call_command("demo_idp", stdout=None)
    idp = IdentityProvider.objects.get(slug="demo")
    alice = UserFactory(idp=idp, subject="demo-alice", email="alice@demo.example")
    to_idp = client.get("/saml/demo/login/", {"step_up": step_up} if step_up else {})
    chooser = client.get(to_idp["Location"].removeprefix("http://127.0.0.1:8000")).content.decode()
    assert ("multi-factor" in chooser) is mfa
    page = client.post(
        "/demo-idp/sso/",
        {
            "SAMLRequest": _hidden(chooser, "SAMLRequest"),
            "RelayState": _hidden(chooser, "RelayState"),
            "user": alice.pk,
        },
    ).content.decode()
    answer = client.post(
        "/saml/demo/acs/",
        {"SAMLResponse": _hidden(page, "SAMLResponse"), "RelayState": _hidden(page, "RelayState")},
    )
    assert answer.status_code == 302
    assert SignIn.objects.get().mfa is mfa


@pytest.mark.urls("tests.demo_urls")
def test_development_idp_refuses_a_request_not_from_this_service(
    demo_mode: None, client: Client
) -> None:
    call_command("demo_idp", stdout=None)
    answer = client.get("/demo-idp/sso/", {"SAMLRequest": "bm90IGRlZmxhdGVk", "RelayState": "x"})
    assert answer.status_code == 400


def test_demo_idp_command_audits_the_operating_system_user(demo_mode: None) -> None:
    call_command("demo_idp", stdout=None)
    event = AuditEvent.objects.get(event_type="idp.demo_configured")
    assert event.actor == cli_actor()


def test_development_idp_is_absent_outside_demo_mode(settings: Any, client: Client) -> None:
    settings.DEMO_MODE = False
    assert client.get("/demo-idp/sso/").status_code == 404
    with pytest.raises(CommandError, match="demo mode"):
        call_command("demo_idp")
    with pytest.raises(PermissionDenied):
        dev_idp.configure_demo_idp(actor=cli_actor(), now=timezone.now())
