"""MFA as an OpenID provider asserts it: ``amr``/``acr``/``auth_time`` from the node provider
(panva/oidc-provider) told how the person logged in, and malformed values in forged tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.test import Client

from federation.models import AuditEvent, SignIn
from tests.federation import test_oidc
from tests.federation.test_oidc import forged_callback, params, start, to_path
from tests.oidc_fixture import OpenIDProvider, TokenStandIn

pytestmark = pytest.mark.django_db

# The OIDC sign-in tests' fixtures: the IdPs registered from the provider's discovery, and
# `forge` (the provider's keys, a token endpoint the test answers).
idps = test_oidc.idps
forge = test_oidc.forge


def _through_provider(
    provider: OpenIDProvider, *, amr: str = "", acr: str = "", **query: str
) -> SignIn:
    client = Client()
    callback = provider.sign_in(start(client, **query), "alice", amr=amr, acr=acr)
    answer = client.get(to_path(callback))
    assert answer.status_code == 302, answer.content
    return SignIn.objects.latest("pk")


@pytest.mark.usefixtures("idps")
def test_amr_mfa_from_the_provider_counts_with_its_auth_time(
    openid_provider: OpenIDProvider,
) -> None:
    before = int(time.time()) - 2

    sign_in = _through_provider(openid_provider, amr="pwd,otp,mfa")

    assert sign_in.mfa is True
    assert sign_in.auth_context["amr"] == ["pwd", "otp", "mfa"]
    assert sign_in.authenticated_at is not None
    assert before <= sign_in.authenticated_at.timestamp() <= time.time() + 2
    event = AuditEvent.objects.get(event_type="signin.success")
    assert event.data["mfa"]["evidence"] == ["mfa"]


@pytest.mark.usefixtures("idps")
def test_acr_2fa_from_the_provider_counts(openid_provider: OpenIDProvider) -> None:
    sign_in = _through_provider(openid_provider, amr="pwd", acr="urn:okta:loa:2fa:any")
    assert sign_in.mfa is True
    assert sign_in.auth_context["acr"] == "urn:okta:loa:2fa:any"


@pytest.mark.usefixtures("idps")
def test_a_password_login_is_no_mfa_but_has_its_time(openid_provider: OpenIDProvider) -> None:
    sign_in = _through_provider(openid_provider, amr="pwd", acr="urn:okta:loa:1fa:pwd")
    assert sign_in.mfa is False
    assert sign_in.authenticated_at is not None


@pytest.mark.usefixtures("idps")
def test_a_step_up_asks_for_a_fresh_login_and_the_mfa_acr(openid_provider: OpenIDProvider) -> None:
    ordinary = params(start(Client()))
    assert "prompt" not in ordinary and "max_age" not in ordinary and "acr_values" not in ordinary

    asked = params(start(Client(), step_up="1"))

    assert asked["prompt"] == "login" and asked["max_age"] == "0"
    assert "urn:okta:loa:2fa:any" in asked["acr_values"].split()
    # The provider accepts the request and signs the person in again, with auth_time.
    sign_in = _through_provider(
        openid_provider, amr="pwd,hwk,mfa", acr="urn:okta:loa:2fa:any", step_up="1"
    )
    assert sign_in.mfa and sign_in.authenticated_at is not None


@pytest.mark.parametrize(
    "claims",
    [
        {"amr": [{"method": "mfa"}]},  # not a list of strings
        {"acr": ["urn:okta:loa:2fa:any"]},  # a list, not a string
        {"acr": "urn:example:unknown"},  # a class nobody configured
        {"amr": ["mfa"], "auth_time": True},
    ],
)
@pytest.mark.usefixtures("forge")
def test_malformed_mfa_claims_are_no_mfa_or_no_time_never_an_error(
    openid_provider: OpenIDProvider,
    token_stand_in: TokenStandIn,
    claims: dict[str, object],
) -> None:
    client = Client()
    answer = forged_callback(client, openid_provider, token_stand_in, **claims)

    assert answer.status_code == 302
    sign_in = SignIn.objects.latest("pk")
    if claims.get("amr") == ["mfa"]:
        assert sign_in.mfa is True and sign_in.authenticated_at is None
    else:
        assert sign_in.mfa is False


@pytest.mark.parametrize("claims", [{"amr": "mfa"}, {"amr": ["pwd"], "auth_time": "yesterday"}])
@pytest.mark.usefixtures("forge")
def test_id_tokens_that_break_oidc_core_claim_types_are_refused_by_the_library(
    openid_provider: OpenIDProvider,
    token_stand_in: TokenStandIn,
    claims: dict[str, object],
) -> None:
    # authlib checks amr is an array and auth_time a number (OIDC Core §2): a clear refusal
    # page naming the fault, never a 500 and never a sign-in.
    client = Client()
    answer = forged_callback(client, openid_provider, token_stand_in, **claims)

    assert answer.status_code == 400 and b"Sign-in refused" in answer.content
    assert not SignIn.objects.exists()
    event = AuditEvent.objects.filter(event_type="signin.refused").latest("id")
    assert event.data["reason"].startswith("oidc.id_token")


@pytest.mark.usefixtures("forge")
def test_an_auth_time_in_the_future_is_not_believed(
    openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    future = int(time.time()) + 3600
    forged_callback(Client(), openid_provider, token_stand_in, amr=["mfa"], auth_time=future)
    assert SignIn.objects.latest("pk").authenticated_at is None


@pytest.mark.usefixtures("forge")
def test_a_past_auth_time_is_kept(
    openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    past = int(time.time()) - 1800
    forged_callback(Client(), openid_provider, token_stand_in, amr=["mfa"], auth_time=past)
    assert SignIn.objects.latest("pk").authenticated_at == datetime.fromtimestamp(past, tz=UTC)
