"""OpenID Connect sign-in against an independent OpenID Provider (panva/oidc-provider).

The happy path, state and code attacks run the whole flow through the real provider. Forged ID
tokens reach the service through a token-endpoint stand-in (``forge`` IdP), signed with the
provider's own key unless the attack is about the key, so each is refused for exactly the claim
or header it gets wrong; ``test_forged_token_harness_accepts_a_correct_token`` proves the harness
itself lets a correct token through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from joserfc import jwt
from joserfc.jwk import RSAKey

from federation.models import AuditEvent, IdentityProvider, SignIn, User
from tests.factories import (
    AccountFactory,
    BusinessUnitFactory,
    GroupMappingFactory,
    LogicalRoleFactory,
)
from tests.oidc_fixture import CLIENT_ID, CLIENT_SECRET, OpenIDProvider, TokenStandIn

pytestmark = pytest.mark.django_db


@pytest.fixture
def idps(openid_provider: OpenIDProvider) -> None:
    cache.clear()  # the JWKS cache
    for slug in ("corp", "corp2"):
        call_command(
            "add_oidc_idp",
            "--slug",
            slug,
            "--issuer",
            openid_provider.issuer,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            stdout=io.StringIO(),
        )


@pytest.fixture
def forge(idps: None, token_stand_in: TokenStandIn, openid_provider: OpenIDProvider) -> None:
    """The IdP `forge`: the real provider's issuer, client and keys, but its token endpoint
    and JWKS are answered by the stand-in, so a test decides which ID token arrives."""
    token_stand_in.reset(openid_provider.public_jwks)
    corp = IdentityProvider.objects.get(slug="corp")
    IdentityProvider.objects.create(
        slug="forge",
        protocol="oidc",
        entity_id=corp.entity_id,
        config={
            **corp.config,
            "token_endpoint": f"{token_stand_in.url}/token",
            "jwks_uri": f"{token_stand_in.url}/jwks",
        },
    )


@pytest.fixture
def mappings() -> None:
    pb = BusinessUnitFactory(slug="pb", name="Personal Banking")
    dw = BusinessUnitFactory(slug="dw", name="Data Warehouse")
    AccountFactory(account_id="111111111111", alias="pb-dev", business_unit=pb)
    AccountFactory(account_id="333333333333", alias="dw-dev", business_unit=dw)
    GroupMappingFactory(
        group="aws-pb-cloud-eng", role=LogicalRoleFactory(name="cloud-eng"), business_unit=pb
    )
    GroupMappingFactory(
        group="aws-dw-database-eng",
        role=LogicalRoleFactory(name="database-eng"),
        business_unit=dw,
    )


def start(client: Client, slug: str = "corp", **query: str) -> str:
    response = client.get(f"/oidc/{slug}/login/", query)
    assert response.status_code == 302, response.content
    return str(response["Location"])


def to_path(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


def with_params(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def assert_refused(client: Client, response: Any, reason: str, *, status: int = 400) -> AuditEvent:
    assert response.status_code == status, response.content
    assert b"Sign-in refused" in response.content
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.first()  # the latest: the attempt ended in a refusal
    assert event is not None and event.event_type == "signin.refused"
    assert event.data["reason"] == reason, event.data
    assert event.data["protocol"] == "oidc"
    return event


def sign_in_through_provider(
    client: Client, provider: OpenIDProvider, user: str = "alice", slug: str = "corp"
) -> Any:
    callback = provider.sign_in(start(client, slug), user)
    return client.get(to_path(callback))


# --- the real flow ---------------------------------------------------------------------------


def test_user_signs_in_through_the_provider_and_sees_their_entitlements(
    idps: None, mappings: None, openid_provider: OpenIDProvider
) -> None:
    client = Client()
    authorization_url = start(client)
    request = params(authorization_url)
    assert authorization_url.startswith(f"{openid_provider.issuer}/auth?")
    assert request["code_challenge_method"] == "S256" and request["code_challenge"]
    assert request["state"] and request["nonce"]
    assert request["redirect_uri"] == "http://127.0.0.1:8000/oidc/corp/callback/"
    pre_login_session = client.session.session_key

    callback = openid_provider.sign_in(authorization_url, "alice")
    response = client.get(to_path(callback))

    assert response.status_code == 302 and response["Location"] == "/"
    assert client.session.session_key != pre_login_session
    user = User.objects.get(idp__slug="corp", subject="alice")
    assert user.email == "alice@corp.example"
    assert user.directory_groups == ["all-staff", "aws-pb-cloud-eng"]
    sign_in = SignIn.objects.get(user=user)
    assert sign_in.groups == ["all-staff", "aws-pb-cloud-eng"]
    assert sign_in.auth_context["iss"] == openid_provider.issuer
    event = AuditEvent.objects.get(event_type="signin.success")
    assert event.data["protocol"] == "oidc" and event.data["subject"] == "alice"

    portal = client.get("/")
    assert portal.status_code == 200
    assert b'data-account="111111111111" data-role="cloud-eng"' in portal.content
    assert b"333333333333" not in portal.content


def test_no_code_verifier_token_or_secret_reaches_the_logs(
    idps: None, openid_provider: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = Client()
    authorization_url = start(client)
    state = params(authorization_url)["state"]
    verifier = client.session[f"_state_oidc:corp_{state}"]["data"]["code_verifier"]
    callback = openid_provider.sign_in(authorization_url, "alice")
    assert client.get(to_path(callback)).status_code == 302

    logged = caplog.text + json.dumps([event.data for event in AuditEvent.objects.all()])
    for secret in (CLIENT_SECRET, params(callback)["code"], verifier):
        assert secret not in logged


def test_groups_come_from_userinfo_when_the_id_token_has_none(
    idps: None, mappings: None, openid_provider: OpenIDProvider
) -> None:
    client = Client()
    response = sign_in_through_provider(client, openid_provider, user="bob")
    assert response.status_code == 302
    user = User.objects.get(idp__slug="corp", subject="bob")
    assert user.directory_groups == ["aws-dw-database-eng"]
    portal = client.get("/")
    assert b'data-account="333333333333" data-role="database-eng"' in portal.content
    assert b"111111111111" not in portal.content


def test_sign_in_returns_to_a_local_next_page_only(
    idps: None, openid_provider: OpenIDProvider
) -> None:
    local = Client()
    callback = openid_provider.sign_in(start(local, next="/requests/?tab=mine"), "alice")
    assert local.get(to_path(callback))["Location"] == "/requests/?tab=mine"
    # One rule with SAML: a local path only, so even this service's own absolute URL is refused.
    for evil in (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:x",
        "http://testserver/requests/",
    ):
        client = Client()
        callback = openid_provider.sign_in(start(client, next=evil), "alice")
        assert client.get(to_path(callback))["Location"] == "/"


def test_unverified_email_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    response = sign_in_through_provider(client, openid_provider, user="mallory")
    assert_refused(client, response, "oidc.email_unverified", status=403)


def test_unknown_or_disabled_idp_is_a_404_page(idps: None) -> None:
    IdentityProvider.objects.filter(slug="corp2").update(enabled=False)
    client = Client()
    for slug in ("nope", "corp2"):
        assert_refused(client, client.get(f"/oidc/{slug}/login/"), "oidc.unknown_idp", status=404)


# --- state, code and mix-up attacks through the real provider --------------------------------


def test_wrong_state_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client), "alice")
    response = client.get(to_path(with_params(callback, state="guessed-state")))
    assert_refused(client, response, "oidc.state_mismatch")


def test_missing_state_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client), "alice")
    response = client.get(to_path(with_params(callback, state=None)))
    assert_refused(client, response, "oidc.state_missing")


def test_state_from_another_browser_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    # Login CSRF: the attacker's own callback (their code, their state) in the victim's browser.
    attacker, victim = Client(), Client()
    callback = openid_provider.sign_in(start(attacker), "mallory")
    start(victim)
    assert_refused(victim, victim.get(to_path(callback)), "oidc.state_mismatch")


def test_stale_sign_in_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client), "alice")
    session = client.session
    key = f"_state_oidc:corp_{params(callback)['state']}"
    session[key]["data"]["started_at"] -= 601  # begun more than ten minutes ago
    session.save()
    assert_refused(client, client.get(to_path(callback)), "oidc.state_expired")


def test_a_callback_cannot_be_used_twice(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client), "alice")
    assert client.get(to_path(callback)).status_code == 302
    client.logout()
    assert_refused(client, client.get(to_path(callback)), "oidc.state_mismatch")


def test_reused_code_is_refused_by_the_provider(
    idps: None, openid_provider: OpenIDProvider
) -> None:
    victim = Client()
    stolen = openid_provider.sign_in(start(victim), "alice")
    assert victim.get(to_path(stolen)).status_code == 302

    # The thief starts their own sign-in and swaps the stolen code into its callback.
    thief = Client()
    own_state = params(start(thief))["state"]
    response = thief.get(to_path(with_params(stolen, state=own_state)))
    event = assert_refused(thief, response, "oidc.code_rejected")
    assert event.data["error"] == "invalid_grant"


def test_wrong_nonce_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    tampered = with_params(start(client), nonce="nonce-of-another-sign-in")
    callback = openid_provider.sign_in(tampered, "alice")
    assert_refused(client, client.get(to_path(callback)), "oidc.id_token_nonce")


def test_callback_of_another_idp_is_refused(idps: None, openid_provider: OpenIDProvider) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client, "corp"), "alice")
    other = to_path(callback).replace("/oidc/corp/", "/oidc/corp2/")
    assert_refused(client, client.get(other), "oidc.state_mismatch")


def test_redirect_to_another_idps_registered_callback_is_refused(
    idps: None, openid_provider: OpenIDProvider
) -> None:
    # Both callbacks are registered for the client; the attacker rewrites redirect_uri.
    client = Client()
    authorization_url = with_params(
        start(client, "corp"), redirect_uri="http://127.0.0.1:8000/oidc/corp2/callback/"
    )
    callback = openid_provider.sign_in(authorization_url, "alice")
    assert urlsplit(callback).path == "/oidc/corp2/callback/"
    assert_refused(client, client.get(to_path(callback)), "oidc.state_mismatch")


def test_response_from_another_authorization_server_is_refused(
    idps: None, openid_provider: OpenIDProvider
) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client), "alice")
    response = client.get(to_path(with_params(callback, iss="https://attacker.example")))
    assert_refused(client, response, "oidc.iss_mismatch")


def test_response_without_iss_is_refused_when_the_provider_advertises_it(
    idps: None, openid_provider: OpenIDProvider
) -> None:
    client = Client()
    callback = openid_provider.sign_in(start(client), "alice")
    assert_refused(client, client.get(to_path(with_params(callback, iss=None))), "oidc.iss_missing")


def test_error_response_from_the_provider_is_a_refusal(idps: None) -> None:
    client = Client()
    state = params(start(client))["state"]
    response = client.get(
        "/oidc/corp/callback/",
        {
            "error": "access_denied",
            "state": state,
            "iss": IdentityProvider.objects.get(slug="corp").entity_id,
        },
    )
    event = assert_refused(client, response, "oidc.provider_error", status=403)
    assert event.data["error"] == "access_denied"


# --- forged ID tokens -------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_callback(
    client: Client,
    provider: OpenIDProvider,
    stand_in: TokenStandIn,
    *,
    header: dict[str, Any] | None = None,
    key: RSAKey | None = None,
    unsigned_token: bool = False,
    **claims: Any,
) -> Any:
    """Start a sign-in at `forge`, make the stand-in answer with an ID token for it (valid
    unless ``claims``/``header``/``key`` say otherwise) and deliver the callback."""
    request = params(start(client, "forge"))
    nonce, state = request["nonce"], request["state"]
    now = int(time.time())
    body = {
        "iss": provider.issuer,
        "sub": "alice",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        "email": "alice@corp.example",
        "email_verified": True,
        "groups": ["aws-pb-cloud-eng"],
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    signing_key = key or provider.signing_key
    jws_header = header or {"alg": "RS256", "kid": signing_key.kid}
    id_token = unsigned(body) if unsigned_token else jwt.encode(jws_header, body, signing_key)
    stand_in.token_response = {"access_token": "at", "token_type": "Bearer", "id_token": id_token}
    return client.get(
        "/oidc/forge/callback/", {"code": "c", "state": state, "iss": provider.issuer}
    )


def unsigned(claims: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def test_forged_token_harness_accepts_a_correct_token(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in)
    assert response.status_code == 302, AuditEvent.objects.first().data  # type: ignore[union-attr]
    assert client.session["_auth_user_id"]
    request = token_stand_in.token_requests[-1]
    assert request["grant_type"] == ["authorization_code"]
    assert request["code_verifier"][0]  # PKCE verifier sent with the code


def test_token_without_kid_verifies_against_a_single_key_jwks(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    # OIDF oidcc-client-test-kid-absent-single-jwks.
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, header={"alg": "RS256"})
    assert response.status_code == 302


def test_token_without_kid_is_refused_when_the_jwks_has_several_keys(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    # OIDF oidcc-client-test-kid-absent-multiple-jwks allows rejecting: we do not guess a key.
    other = RSAKey.generate_key(2048, parameters={"kid": "provider-2", "use": "sig"})
    token_stand_in.jwks = {
        "keys": [openid_provider.public_jwks["keys"][0], other.as_dict(private=False)]
    }
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, header={"alg": "RS256"})
    assert_refused(client, response, "oidc.id_token_unknown_key")


def test_token_from_another_issuer_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    # Signed with a key we trust but for another issuer: a multi-tenant provider sharing keys
    # across tenants (as Entra ID does) mixes up tenants exactly like this.
    client = Client()
    response = forged_callback(
        client, openid_provider, token_stand_in, iss="https://other-tenant.example/"
    )
    assert_refused(client, response, "oidc.id_token_issuer")


def test_token_for_another_audience_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, aud="another-app")
    assert_refused(client, response, "oidc.id_token_audience")


def test_token_for_another_audience_with_our_azp_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    # authlib's azp check alone lets aud=[other], azp=us through (SECURITY.md §2).
    client = Client()
    response = forged_callback(
        client, openid_provider, token_stand_in, aud=["another-app"], azp=CLIENT_ID
    )
    assert_refused(client, response, "oidc.id_token_audience")


def test_expired_token_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    client = Client()
    now = int(time.time())
    response = forged_callback(
        client, openid_provider, token_stand_in, iat=now - 7200, exp=now - 3600
    )
    assert_refused(client, response, "oidc.id_token_expired")


def test_alg_none_token_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, unsigned_token=True)
    event = assert_refused(client, response, "oidc.id_token_algorithm")
    assert event.data["header_alg"] == "none"


def test_hs256_token_keyed_with_the_providers_public_key_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    # CVE-2024-37568 shape: HMAC over the token with the provider's public key as the secret.
    client = Client()
    start_url = start(client, "forge")
    nonce, state = params(start_url)["nonce"], params(start_url)["state"]
    now = int(time.time())
    claims = {
        "iss": openid_provider.issuer,
        "sub": "alice",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        "email": "alice@corp.example",
    }
    public_pem = openid_provider.signing_key.as_pem(private=False)
    header = {"alg": "HS256", "kid": openid_provider.signing_key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token_stand_in.token_response = {
        "access_token": "at",
        "token_type": "Bearer",
        "id_token": f"{signing_input}.{b64(mac)}",
    }
    response = client.get(
        "/oidc/forge/callback/", {"code": "c", "state": state, "iss": openid_provider.issuer}
    )
    event = assert_refused(client, response, "oidc.id_token_algorithm")
    assert event.data["header_alg"] == "HS256"


def test_token_signed_by_an_unknown_key_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    attacker_key = RSAKey.generate_key(2048, parameters={"kid": openid_provider.signing_key.kid})
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, key=attacker_key)
    assert_refused(client, response, "oidc.id_token_signature")


def test_key_rotation_refetches_the_jwks_once_per_interval(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    assert forged_callback(Client(), openid_provider, token_stand_in).status_code == 302
    assert token_stand_in.jwks_fetches == 1

    # The provider rotates to a new key: an unknown kid triggers one refetch, which finds it.
    new_key = RSAKey.generate_key(2048, parameters={"kid": "provider-2", "use": "sig"})
    token_stand_in.jwks = {
        "keys": [openid_provider.public_jwks["keys"][0], new_key.as_dict(private=False)]
    }
    assert (
        forged_callback(Client(), openid_provider, token_stand_in, key=new_key).status_code == 302
    )
    assert token_stand_in.jwks_fetches == 2

    # A flood of made-up kids within the interval does not make us hammer the provider.
    for n in range(3):
        bogus = RSAKey.generate_key(2048, parameters={"kid": f"bogus-{n}"})
        client = Client()
        response = forged_callback(client, openid_provider, token_stand_in, key=bogus)
        assert_refused(client, response, "oidc.id_token_unknown_key")
    assert token_stand_in.jwks_fetches == 2


def test_userinfo_about_another_subject_is_not_mixed_in(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    IdentityProvider.objects.filter(slug="forge").update(
        config={
            **IdentityProvider.objects.get(slug="forge").config,
            "userinfo_endpoint": f"{token_stand_in.url}/userinfo",
        }
    )
    token_stand_in.userinfo = {"sub": "someone-else", "groups": ["aws-pb-admin"]}
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, groups=None)
    assert_refused(client, response, "oidc.userinfo_subject_mismatch")


def test_unreadable_userinfo_is_refused(
    forge: None, openid_provider: OpenIDProvider, token_stand_in: TokenStandIn
) -> None:
    # No groups in the ID token sends us to userinfo; the real provider refuses the access token
    # "at" (it never issued it), so nothing is assumed about the person's groups.
    client = Client()
    response = forged_callback(client, openid_provider, token_stand_in, groups=None)
    assert_refused(client, response, "oidc.userinfo_failed", status=502)
