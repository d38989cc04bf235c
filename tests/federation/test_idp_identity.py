"""What both sign-in protocols share (federation/idp/identity.py) and their one URL namespace."""

from __future__ import annotations

import pytest
from django.urls import reverse

from federation.idp.identity import SignInRefused, load_idp, safe_next
from federation.models import IdentityProvider
from federation.refusals import Refused
from tests.factories import IdentityProviderFactory


@pytest.mark.parametrize(
    "candidate",
    [
        None,
        "",
        "requests/",
        "//evil.test/",
        "/\\evil.test",
        "https://evil.test/",
        "http://testserver/requests/",
        "javascript:alert(1)",
        "/requests/\r\nSet-Cookie: x=1",
        "/a\\b",
        "/a\x00",
    ],
)
def test_anything_but_a_local_path_goes_to_the_portal(candidate: str | None) -> None:
    assert safe_next(candidate) == "/"


@pytest.mark.parametrize("candidate", ["/", "/requests/", "/requests/?tab=mine", "/a/b#c"])
def test_a_local_path_is_kept(candidate: str) -> None:
    assert safe_next(candidate) == candidate


def test_sign_in_refusal_is_a_refused_with_its_code_and_status() -> None:
    refusal = SignInRefused("No.", code="saml.replay", status=400, detail={"check": "x"})
    assert isinstance(refusal, Refused)
    assert (refusal.code, refusal.status, refusal.message, refusal.title) == (
        "saml.replay",
        400,
        "No.",
        "Sign-in refused",
    )
    assert SignInRefused("No.").status == 403


@pytest.mark.django_db
@pytest.mark.parametrize("protocol", list(IdentityProvider.Protocol))
def test_load_idp_refuses_unknown_disabled_and_other_protocol_idps(
    protocol: IdentityProvider.Protocol,
) -> None:
    other = next(p for p in IdentityProvider.Protocol if p != protocol)
    IdentityProviderFactory(slug="good", protocol=protocol)
    IdentityProviderFactory(slug="off", protocol=protocol, enabled=False)
    IdentityProviderFactory(slug="other", protocol=other)
    assert load_idp("good", protocol).slug == "good"
    for slug in ("nope", "off", "other"):
        with pytest.raises(SignInRefused) as refused:
            load_idp(slug, protocol)
        assert (refused.value.code, refused.value.status) == (f"{protocol.value}.unknown_idp", 404)


def test_one_namespace_keeps_the_public_paths() -> None:
    assert reverse("idp:login") == "/login/"
    assert reverse("idp:logout") == "/logout/"
    for name, path in [
        ("saml-login", "/saml/corp/login/"),
        ("saml-acs", "/saml/corp/acs/"),
        ("saml-metadata", "/saml/corp/metadata/"),
        ("saml-sls", "/saml/corp/sls/"),
        ("oidc-login", "/oidc/corp/login/"),
        ("oidc-callback", "/oidc/corp/callback/"),
    ]:
        assert reverse(f"idp:{name}", args=["corp"]) == path
