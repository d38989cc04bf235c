"""Sign-in and SCIM meet on one identity; the admin page /scim/ is for admins only."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from django.utils import timezone

from federation.idp.identity import SignInRefused, VerifiedIdentity
from federation.idp.signin import complete_sign_in
from federation.models import AuditEvent, PortalSession, User
from tests.directory.conftest import GROUP_SCHEMA, Scim, okta_user, patch
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _request(rf: RequestFactory) -> object:
    request = rf.post("/saml/okta/acs/")
    request.session = SessionStore()
    return request


def _sign_in(rf: RequestFactory, scim: Scim, groups: tuple[str, ...]) -> User:
    identity = VerifiedIdentity(
        idp=scim.idp, subject="alice@corp.example", email="alice@corp.example", groups=groups
    )
    return complete_sign_in(_request(rf), identity, now=timezone.now())  # type: ignore[arg-type]


def test_the_most_recent_group_statement_wins_from_either_source(
    rf: RequestFactory, scim: Scim
) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    group = scim.post(
        "Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": "aws-pb-ops",
            "members": [{"value": alice["id"]}],
        },
    ).body

    user = _sign_in(rf, scim, ("aws-pb-cloud-eng",))
    assert user.directory_groups == ["aws-pb-cloud-eng"]
    assert user.groups_source == "signin"
    assert PortalSession.objects.filter(user=user).count() == 1

    scim.patch(
        f"Groups/{group['id']}",
        patch({"op": "remove", "path": f'members[value eq "{alice["id"]}"]'}),
    )
    scim.patch(
        f"Groups/{group['id']}",
        patch({"op": "add", "path": "members", "value": [{"value": alice["id"]}]}),
    )
    user.refresh_from_db()
    # SCIM decides the group it provisions; the sign-in's other group stands.
    assert user.directory_groups == ["aws-pb-cloud-eng", "aws-pb-ops"]
    assert user.groups_source == "scim"
    # Both statements stay in the audit log.
    assert AuditEvent.objects.filter(event_type="signin.success").exists()
    assert AuditEvent.objects.filter(event_type="scim.group_members_changed").count() >= 3


def test_a_deactivated_identity_cannot_sign_in_again(rf: RequestFactory, scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    _sign_in(rf, scim, ())
    scim.patch(f"Users/{alice['id']}", patch({"op": "replace", "value": {"active": False}}))

    with pytest.raises(SignInRefused) as refused:
        _sign_in(rf, scim, ())

    assert refused.value.code == "signin.deactivated"
    assert not PortalSession.objects.exists()


def test_status_page_shows_each_idp_and_the_leavers(scim: Scim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ADMIN_GROUPS = ["fedaccess-admins"]
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    scim.patch(f"Users/{alice['id']}", patch({"op": "replace", "value": {"active": False}}))
    scim.get("Users/nope")
    admin = Client()
    admin.force_login(UserFactory(directory_groups=["fedaccess-admins"]))

    page = admin.get("/scim/")

    assert page.status_code == 200
    body = page.content.decode()
    assert "okta" in body
    assert "alice@corp.example" in body
    assert "deactivated" in body
    assert "No User" in body  # the recent error


def test_status_page_is_refused_to_others_and_audited(scim: Scim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ADMIN_GROUPS = ["fedaccess-admins"]
    someone = Client()
    someone.force_login(UserFactory(directory_groups=["aws-pb-cloud-eng"]))

    assert someone.get("/scim/").status_code == 403
    assert AuditEvent.objects.filter(event_type="access.denied", target="/scim/").exists()
    assert Client().get("/scim/").status_code == 302
