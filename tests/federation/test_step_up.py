"""Step-up (SPEC §4): a require_mfa role is issued only on a recent MFA sign-in, through every
path (service, portal, API), and its sessions carry MFA=true as AWS (moto) received them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from federation.issuance.service import issue_session
from federation.issuance.tokens import create_api_token
from federation.models import AuditEvent, LogicalRole, SessionIssuance, SignIn
from federation.stepup.rules import StepUpRequired
from tests.aws import MotoServer
from tests.factories import GroupMappingFactory, LogicalRoleFactory, SignInFactory
from tests.issuance import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def security(world: World) -> LogicalRole:
    """pb's security role in prod: standing for alice, needs MFA from the last 15 minutes."""
    role = LogicalRoleFactory(
        name="security", privileged=True, require_mfa=True, max_auth_age=timedelta(minutes=15)
    )
    GroupMappingFactory(
        group="aws-pb-cloud-eng", role=role, business_unit=world.pb, environments=["prod"]
    )
    return role


def _sign_in(world: World, *, mfa: bool, minutes_ago: float | None, now: datetime) -> SignIn:
    return SignInFactory(
        user=world.alice,
        idp=world.idp,
        at=now,
        mfa=mfa,
        authenticated_at=None if minutes_ago is None else now - timedelta(minutes=minutes_ago),
    )


def _tags(sent: dict[str, str]) -> dict[str, str]:
    return {
        sent[f"Tags.member.{n}.Key"]: sent[f"Tags.member.{n}.Value"]
        for n in range(1, 20)
        if f"Tags.member.{n}.Key" in sent
    }


def _issue(world: World, authentication: SignIn | None, now: datetime, **extra: Any) -> Any:
    return issue_session(
        world.alice,
        account_id=world.pb_prod.account_id,
        role="security",
        kind="cli",
        requested=None,
        now=now,
        ip="192.0.2.10",
        authentication=authentication,
        **extra,
    )


def test_a_recent_mfa_sign_in_issues_the_role_with_the_mfa_tag(
    world: World, security: LogicalRole, broker: MotoServer
) -> None:
    now = timezone.now()
    broker.start_recording()

    issued = _issue(world, _sign_in(world, mfa=True, minutes_ago=3, now=now), now)

    [sent] = broker.received("AssumeRole")
    assert _tags(sent) == {"BusinessUnit": "pb", "IdP": "corp", "MFA": "true"}
    event = AuditEvent.objects.get(event_type="issuance.issued")
    assert event.data["tags"]["MFA"] == "true" and event.data["require_mfa"] is True
    assert SessionIssuance.objects.filter(pk=issued.issuance_id).exists()


@pytest.mark.parametrize(
    ("mfa", "minutes_ago", "why"),
    [
        (False, 1, "did not report one"),  # a password-only sign-in
        (True, 16, "last 15 minutes"),  # MFA, but too long ago
        (True, None, "last 15 minutes"),  # MFA, at an unknown time
    ],
)
def test_without_recent_mfa_the_role_is_refused_step_up_required_and_nothing_is_issued(
    world: World,
    security: LogicalRole,
    broker: MotoServer,
    mfa: bool,
    minutes_ago: float | None,
    why: str,
) -> None:
    now = timezone.now()
    broker.start_recording()

    with pytest.raises(StepUpRequired) as refused:
        _issue(world, _sign_in(world, mfa=mfa, minutes_ago=minutes_ago, now=now), now)

    assert why in refused.value.message
    assert refused.value.status == 403
    assert refused.value.detail["step_up_url"].endswith(
        "/step-up/?account=222222222222&role=security&action=cli"
    )
    assert broker.received("AssumeRole") == []
    assert not SessionIssuance.objects.exists()
    event = AuditEvent.objects.get(event_type="issuance.refused")
    assert event.data["reason"] == "step_up_required"


def test_no_sign_in_at_all_is_refused(world: World, security: LogicalRole) -> None:
    with pytest.raises(StepUpRequired):
        _issue(world, None, timezone.now())


def test_an_ordinary_role_needs_no_mfa_but_says_so_when_it_was_shown(
    world: World, security: LogicalRole, broker: MotoServer
) -> None:
    now = timezone.now()
    broker.start_recording()
    for mfa in (False, True):
        issue_session(
            world.alice,
            account_id=world.pb_dev.account_id,
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=now,
            ip=None,
            authentication=_sign_in(world, mfa=mfa, minutes_ago=600, now=now),
        )
    plain, with_mfa = broker.received("AssumeRole")
    assert "MFA" not in _tags(plain)
    assert _tags(with_mfa)["MFA"] == "true"


# --- the API and the CLI ----------------------------------------------------------------------


def _token(world: World) -> str:
    return create_api_token(
        world.alice, name="laptop", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext


def _api(token: str) -> Any:
    return Client().post(
        "/api/v1/credentials",
        {"account": "222222222222", "role": "security"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_the_api_answers_403_step_up_required_with_the_url_then_issues_after_mfa(
    world: World, security: LogicalRole, broker: MotoServer
) -> None:
    token = _token(world)
    now = timezone.now()
    _sign_in(world, mfa=False, minutes_ago=1, now=now)

    refused = _api(token)

    assert refused.status_code == 403
    body = refused.json()
    assert body["error"] == "step_up_required"
    assert body["step_up_url"] == (
        "http://127.0.0.1:8000/step-up/?account=222222222222&role=security&action=cli"
    )
    # The person signs in again with MFA in a browser: the API judges their latest sign-in.
    _sign_in(world, mfa=True, minutes_ago=0, now=timezone.now())
    issued = _api(token)
    assert issued.status_code == 200, issued.content
    assert issued.json()["Version"] == 1


# --- the portal -------------------------------------------------------------------------------


def _portal_client(world: World, sign_in: SignIn) -> Client:
    client = Client()
    client.force_login(world.alice)
    session = client.session
    session["sign_in_id"] = sign_in.pk
    session.save()
    return client


def test_the_portal_links_a_password_only_session_to_a_fresh_mfa_sign_in(
    world: World, security: LogicalRole, broker: MotoServer
) -> None:
    client = _portal_client(world, _sign_in(world, mfa=False, minutes_ago=1, now=timezone.now()))

    answer = client.post(
        "/sessions/", {"account": "222222222222", "role": "security", "action": "console"}
    )

    # A page linking to the step-up, not a redirect: the CSP's form-action 'self' would block
    # a form POST redirected on to the IdP.
    assert answer.status_code == 403
    link = "/step-up/?account=222222222222&amp;role=security&amp;action=console"
    assert f'href="{link}"'.encode() in answer.content
    step_up = client.get(link.replace("&amp;", "&"))
    assert step_up.status_code == 302
    location = step_up["Location"]
    assert location.startswith("/saml/corp/login/?") and "step_up=1" in location
    assert "done%3D1" in location  # comes back marked, so a second failure does not loop


def test_after_an_idp_that_ignores_the_step_up_the_page_says_so_instead_of_looping(
    world: World, security: LogicalRole
) -> None:
    client = _portal_client(world, _sign_in(world, mfa=False, minutes_ago=0, now=timezone.now()))

    page = client.get("/step-up/?account=222222222222&role=security&action=console&done=1")

    assert page.status_code == 403
    assert b"did not report multi-factor" in page.content


def test_a_fresh_mfa_session_gets_the_button_and_the_post_issues(
    world: World, security: LogicalRole, broker: MotoServer
) -> None:
    client = _portal_client(world, _sign_in(world, mfa=True, minutes_ago=0, now=timezone.now()))

    page = client.get("/step-up/?account=222222222222&role=security&action=cli&done=1")
    assert page.status_code == 200 and b"Show CLI credentials" in page.content
    issued = client.post(
        "/sessions/",
        {"account": "222222222222", "role": "security", "action": "cli", "step_up": "1"},
        HTTP_ACCEPT="application/json",
    )
    assert issued.status_code == 200, issued.content
    assert issued.json()["Version"] == 1


def test_a_step_up_return_that_still_lacks_mfa_is_a_clear_refusal_not_a_redirect(
    world: World, security: LogicalRole
) -> None:
    client = _portal_client(world, _sign_in(world, mfa=False, minutes_ago=0, now=timezone.now()))

    answer = client.post(
        "/sessions/",
        {"account": "222222222222", "role": "security", "action": "console", "step_up": "1"},
    )

    assert answer.status_code == 403
    assert b"multi-factor" in answer.content


@pytest.mark.parametrize(
    "query",
    [
        "account=22222222222x&role=security&action=cli",
        "account=222222222222&role=Security!&action=cli",
        "account=222222222222&role=security&action=shell",
        "",
    ],
)
def test_bad_step_up_links_are_a_400_page(world: World, query: str) -> None:
    client = Client()
    client.force_login(world.alice)
    assert client.get(f"/step-up/?{query}").status_code == 400


def test_the_step_up_page_does_not_offer_roles_the_person_cannot_use(
    world: World, security: LogicalRole
) -> None:
    client = Client()
    client.force_login(world.dora)
    page = client.get("/step-up/?account=222222222222&role=security&action=cli")
    assert page.status_code == 400
    assert b"cannot use the role" in page.content


def test_another_persons_sign_in_id_in_the_session_is_not_judged(
    world: World, security: LogicalRole, broker: MotoServer
) -> None:
    now = timezone.now()
    dora_mfa = SignInFactory(user=world.dora, idp=world.idp, at=now, mfa=True, authenticated_at=now)
    client = _portal_client(world, dora_mfa)

    answer = client.post(
        "/sessions/",
        {"account": "222222222222", "role": "security", "action": "cli", "step_up": "1"},
    )
    assert answer.status_code == 403
