from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.utils import timezone

from federation.idp.identity import SignInRefused, VerifiedIdentity, groups_from
from federation.idp.signin import complete_sign_in, refusal_response
from federation.models import AuditEvent, IdentityProvider, SignIn, User
from tests.factories import IdentityProviderFactory

pytestmark = pytest.mark.django_db


def _request(rf: RequestFactory) -> object:
    request = rf.post("/saml/x/acs/", REMOTE_ADDR="192.0.2.7")
    request.session = SessionStore()
    request.session["planted"] = "by attacker"
    request.session.save()
    return request


def test_sign_in_creates_the_person_stores_groups_and_rotates_the_session(
    rf: RequestFactory,
) -> None:
    idp = IdentityProviderFactory(slug="corp")
    request = _request(rf)
    planted_key = request.session.session_key  # type: ignore[attr-defined]

    user = complete_sign_in(
        request,  # type: ignore[arg-type]
        VerifiedIdentity(idp=idp, subject="00u1", email="a@corp.example", groups=("b", "a")),
        now=timezone.now(),
    )

    assert user.directory_groups == ["a", "b"]
    assert request.session.session_key != planted_key  # type: ignore[attr-defined]
    sign_in = SignIn.objects.get(user=user)
    assert (sign_in.groups, sign_in.ip) == (["a", "b"], "192.0.2.7")
    event = AuditEvent.objects.get(event_type="signin.success")
    assert event.data["subject"] == "00u1" and event.data["new_person"] is True


def test_email_change_keeps_the_person_and_recycled_email_is_a_new_person(
    rf: RequestFactory,
) -> None:
    idp = IdentityProviderFactory(slug="corp")
    first = complete_sign_in(
        _request(rf),  # type: ignore[arg-type]
        VerifiedIdentity(idp=idp, subject="00u1", email="old@corp.example", groups=("g",)),
        now=timezone.now(),
    )
    renamed = complete_sign_in(
        _request(rf),  # type: ignore[arg-type]
        VerifiedIdentity(idp=idp, subject="00u1", email="new@corp.example", groups=()),
        now=timezone.now(),
    )
    recycled = complete_sign_in(
        _request(rf),  # type: ignore[arg-type]
        VerifiedIdentity(idp=idp, subject="00u2", email="old@corp.example", groups=()),
        now=timezone.now(),
    )
    assert renamed.pk == first.pk
    assert renamed.email == "new@corp.example" and renamed.directory_groups == []
    assert recycled.pk != first.pk
    assert User.objects.count() == 2


def test_same_subject_at_another_idp_is_another_person(rf: RequestFactory) -> None:
    a = complete_sign_in(
        _request(rf),  # type: ignore[arg-type]
        VerifiedIdentity(
            idp=IdentityProviderFactory(slug="a"), subject="1", email="x@a", groups=()
        ),
        now=timezone.now(),
    )
    b = complete_sign_in(
        _request(rf),  # type: ignore[arg-type]
        VerifiedIdentity(
            idp=IdentityProviderFactory(slug="b"), subject="1", email="x@a", groups=()
        ),
        now=timezone.now(),
    )
    assert a.pk != b.pk


def test_refusal_is_a_page_and_an_audit_event(rf: RequestFactory) -> None:
    request = _request(rf)
    response = refusal_response(
        request,  # type: ignore[arg-type]
        "corp",
        SignInRefused("This sign-in response was already used.", code="saml.replay", status=400),
        protocol=IdentityProvider.Protocol.SAML,
        now=timezone.now(),
    )
    assert response.status_code == 400
    assert b"already used" in response.content
    event = AuditEvent.objects.get(event_type="signin.refused")
    assert event.data["reason"] == "saml.replay"
    assert event.ip == "192.0.2.7"


def test_refusal_detail_cannot_overwrite_the_audited_reason(rf: RequestFactory) -> None:
    refusal = SignInRefused(
        "This sign-in response was already used.",
        code="saml.replay",
        status=400,
        detail={"reason": "ok", "idp": "other", "protocol": "oidc", "check": "replay"},
    )
    refusal_response(
        _request(rf),  # type: ignore[arg-type]
        "corp",
        refusal,
        protocol=IdentityProvider.Protocol.SAML,
        now=timezone.now(),
    )
    event = AuditEvent.objects.get(event_type="signin.refused")
    assert event.data["reason"] == "saml.replay"
    assert (event.data["idp"], event.data["protocol"]) == ("corp", "saml")
    assert event.data["check"] == "replay"


def test_groups_are_normalised() -> None:
    assert groups_from(["b", " a ", "", "b"]) == ("a", "b")
    assert groups_from("solo") == ("solo",)
    assert groups_from(None) == ()
