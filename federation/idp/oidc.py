"""OpenID Connect sign-in (SPEC §4, SECURITY.md §2): the one place an OIDC callback is validated.

``begin_sign_in`` builds the authorization request (code flow, PKCE S256, state, nonce) and
remembers it in the browser's session under a key that names the IdP; ``finish_sign_in`` checks
the callback against it, redeems the code and validates the ID token, then returns a
``VerifiedIdentity`` or raises ``SignInRefused``. It decides nothing about access.

authlib does the protocol work; what it leaves to the application is done here:
- the issuer and audience are always essential claims (authlib compares neither once
  ``claims_options`` is passed, and never compares ``aud`` on its own);
- signing algorithms are pinned from the IdP's configuration, never taken from discovery at
  sign-in time, and only asymmetric ones are accepted (no ``none``, no HS256 keyed with a public
  key);
- the JWKS is cached with a TTL and an unknown ``kid`` triggers at most one refetch per interval,
  so a forged ``kid`` cannot make us hammer the provider, while key rotation still works;
- mix-up: every IdP has its own redirect URI and its own state namespace in the session, and the
  RFC 9207 ``iss`` response parameter is required when the provider advertises it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import DjangoIntegration, DjangoOAuth2App
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from joserfc import errors as jose_errors

from federation.idp import mfa
from federation.idp.client_secrets import ClientSecretUnavailable, resolve_client_secret
from federation.idp.identity import SignInRefused, VerifiedIdentity, groups_from, safe_next
from federation.models import IdentityProvider

# Asymmetric JWS algorithms only: a symmetric one would be keyed with the client secret (or, in
# the CVE-2024-37568 confusion, with the provider's public key), and `none` is never acceptable.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HTTP_TIMEOUT_SECONDS = 10
# A sign-in must come back within this time of starting it.
STATE_LIFETIME_SECONDS = 600
# Clock skew tolerated on exp / iat / nbf.
LEEWAY_SECONDS = 60
JWKS_CACHE_SECONDS = 3600
# At most one forced JWKS refetch (unknown kid) per provider per interval.
JWKS_REFETCH_INTERVAL_SECONDS = 60
MAX_SUBJECT_LENGTH = 255  # OIDC Core §2: sub is at most 255 ASCII characters


@dataclass(frozen=True)
class OidcConfig:
    """An IdP's OIDC settings as ``add_oidc_idp`` stored them (discovery is not re-read)."""

    issuer: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    scopes: str
    algorithms: tuple[str, ...]
    token_endpoint_auth_method: str
    iss_parameter_supported: bool

    @classmethod
    def of(cls, idp: IdentityProvider) -> OidcConfig:
        config: Mapping[str, Any] = idp.config or {}
        try:
            algorithms = tuple(str(a) for a in config.get("id_token_algorithms", ["RS256"]))
            result = cls(
                issuer=idp.entity_id,
                client_id=str(config["client_id"]),
                authorization_endpoint=str(config["authorization_endpoint"]),
                token_endpoint=str(config["token_endpoint"]),
                jwks_uri=str(config["jwks_uri"]),
                userinfo_endpoint=str(config.get("userinfo_endpoint") or ""),
                scopes=str(config.get("scopes") or "openid email profile"),
                algorithms=algorithms,
                token_endpoint_auth_method=str(
                    config.get("token_endpoint_auth_method") or "client_secret_basic"
                ),
                iss_parameter_supported=bool(config.get("iss_parameter_supported", False)),
            )
        except KeyError as missing:
            raise _misconfigured(idp, f"missing {missing.args[0]}") from None
        if not algorithms or not set(algorithms) <= ASYMMETRIC_ALGORITHMS:
            raise _misconfigured(idp, "ID token algorithms must be asymmetric")
        if "openid" not in result.scopes.split():
            raise _misconfigured(idp, "the scopes must include openid")
        return result


@dataclass(frozen=True)
class OidcSignIn:
    identity: VerifiedIdentity
    next_url: str


def callback_url(idp: IdentityProvider) -> str:
    """The redirect URI of this IdP: exactly what is registered at the provider (one per IdP)."""
    return f"{settings.BASE_URL}/oidc/{idp.slug}/callback/"


def begin_sign_in(
    request: HttpRequest,
    idp: IdentityProvider,
    *,
    next_url: str,
    now: datetime,
    step_up: bool = False,
) -> str:
    """Remember a fresh state, nonce and PKCE verifier in the session; return the URL of the
    provider's authorization endpoint to send the browser to.

    ``step_up`` asks for a fresh multi-factor sign-in: ``prompt=login``, ``max_age=0`` (so the
    provider must return ``auth_time``) and ``acr_values`` naming the IdP's MFA values that are
    not RFC 8176 ``amr`` words (SPEC §4 Step-up). Whether the provider obliged is judged on
    the ID token alone (federation/idp/mfa.py).

    ``idp`` comes from ``identity.load_idp`` (known, enabled, OIDC); ``next_url`` is kept only
    if ``identity.safe_next`` accepts it. Raises ``SignInRefused`` when it is misconfigured.
    """
    config = OidcConfig.of(idp)
    client = _client(idp, config, client_secret=None)
    redirect_uri = callback_url(idp)
    extra: dict[str, str] = {}
    if step_up:
        extra = {"prompt": "login", "max_age": "0"}
        acr_values = sorted(v for v in mfa.mfa_contexts(idp) if ":" in v)
        if acr_values and (idp.config or {}).get("request_acr_values", True) is not False:
            extra["acr_values"] = " ".join(acr_values)
    request_data = client.create_authorization_url(redirect_uri, **extra)
    client.save_authorize_data(
        request,
        redirect_uri=redirect_uri,
        next_url=safe_next(next_url),
        started_at=int(now.timestamp()),
        **request_data,
    )
    return str(request_data["url"])


def finish_sign_in(request: HttpRequest, idp: IdentityProvider, *, now: datetime) -> OidcSignIn:
    """Validate the authorization response on the callback and the tokens it leads to.

    The state is consumed first, whatever happens next, so every response is single-use. Raises
    ``SignInRefused`` with a stable reason code for every failure.
    """
    config = OidcConfig.of(idp)
    params = request.GET
    integration = _integration(idp)
    state = params.get("state")
    if not state:
        raise SignInRefused(
            "The sign-in response carries no state, so it cannot be matched to a sign-in you "
            "started. Start again from the sign-in page.",
            code="oidc.state_missing",
            status=400,
        )
    started = integration.get_state_data(request.session, state)
    integration.clear_state_data(request.session, state)
    if not started:
        raise SignInRefused(
            "This sign-in response does not belong to a sign-in started in this browser with "
            "this identity provider. Start again from the sign-in page.",
            code="oidc.state_mismatch",
            status=400,
        )
    if int(now.timestamp()) - int(started.get("started_at", 0)) > STATE_LIFETIME_SECONDS:
        raise SignInRefused(
            "This sign-in took too long. Start again.", code="oidc.state_expired", status=400
        )
    _check_response_issuer(params.get("iss"), config)
    error = params.get("error")
    if error:
        raise SignInRefused(
            "The identity provider did not sign you in.",
            code="oidc.provider_error",
            status=403,
            detail={"error": _printable(error)},
        )
    code = params.get("code")
    if not code:
        raise SignInRefused(
            "The sign-in response carries no authorization code.",
            code="oidc.code_missing",
            status=400,
        )

    try:
        secret = resolve_client_secret(idp.config or {})
    except ClientSecretUnavailable as exc:
        raise _misconfigured(idp, str(exc)) from None
    client = _client(idp, config, client_secret=secret)
    token = _redeem_code(client, code, started)
    claims = _validate_id_token(client, token, config, nonce=str(started["nonce"]))
    identity = _identity(idp, client, token, claims, now=now)
    next_url = safe_next(str(started.get("next_url") or "/"))
    return OidcSignIn(identity=identity, next_url=next_url)


class _ProviderClient(DjangoOAuth2App):  # type: ignore[misc]
    """authlib's Django client, with the JWKS read through our cache and refetch limit."""

    def fetch_jwk_set(self, force: bool = False) -> dict[str, Any]:
        return fetch_jwks(str(self.server_metadata["jwks_uri"]), force=force)


def _integration(idp: IdentityProvider) -> DjangoIntegration:
    # The state's session key is `_state_oidc:<slug>_<state>`: a state issued for one IdP is not
    # found on another IdP's callback, which is what defeats an IdP mix-up.
    return DjangoIntegration(f"oidc:{idp.slug}")


def _client(
    idp: IdentityProvider, config: OidcConfig, *, client_secret: str | None
) -> _ProviderClient:
    return _ProviderClient(
        _integration(idp),
        name=f"oidc:{idp.slug}",
        client_id=config.client_id,
        client_secret=client_secret,
        client_kwargs={
            "scope": config.scopes,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": config.token_endpoint_auth_method,
            "default_timeout": HTTP_TIMEOUT_SECONDS,
        },
        # Server metadata comes from our stored configuration only: no discovery at sign-in.
        issuer=config.issuer,
        authorization_endpoint=config.authorization_endpoint,
        token_endpoint=config.token_endpoint,
        jwks_uri=config.jwks_uri,
        userinfo_endpoint=config.userinfo_endpoint or None,
        id_token_signing_alg_values_supported=list(config.algorithms),
    )


def fetch_jwks(jwks_uri: str, *, force: bool = False) -> dict[str, Any]:
    """The provider's JWKS from the cache (TTL ``JWKS_CACHE_SECONDS``), fetched when absent.

    ``force`` (an unknown ``kid``) refetches at most once per ``JWKS_REFETCH_INTERVAL_SECONDS``
    per provider; within the interval the cached set is returned and the token fails to verify.
    """
    cache_key = "oidc:jwks:" + hashlib.sha256(jwks_uri.encode()).hexdigest()
    cached: dict[str, Any] | None = cache.get(cache_key)
    if cached is not None:
        if not force:
            return cached
        if not cache.add(cache_key + ":refetch", 1, timeout=JWKS_REFETCH_INTERVAL_SECONDS):
            return cached
    response = requests.get(jwks_uri, timeout=HTTP_TIMEOUT_SECONDS)
    response.raise_for_status()
    jwks = response.json()
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("the JWKS document has no keys array")
    cache.set(cache_key, jwks, timeout=JWKS_CACHE_SECONDS)
    return jwks


def _check_response_issuer(iss: str | None, config: OidcConfig) -> None:
    # RFC 9207: a provider that advertises the parameter always sends it; its absence or another
    # value means the response came from (or was routed through) another authorization server.
    if iss is None and config.iss_parameter_supported:
        raise SignInRefused(
            "The sign-in response does not say which identity provider issued it.",
            code="oidc.iss_missing",
            status=400,
        )
    if iss is not None and iss != config.issuer:
        raise SignInRefused(
            "The sign-in response was issued by another identity provider than the one you chose.",
            code="oidc.iss_mismatch",
            status=400,
            detail={"response_iss": _printable(iss, 200)},
        )


def _redeem_code(client: _ProviderClient, code: str, started: Mapping[str, Any]) -> dict[str, Any]:
    try:
        token: dict[str, Any] = client.fetch_access_token(
            code=code,
            redirect_uri=started["redirect_uri"],
            code_verifier=started["code_verifier"],
        )
    except OAuthError as exc:
        # invalid_grant: a code used twice, expired, or issued for another client or verifier.
        raise SignInRefused(
            "The identity provider refused to redeem this sign-in (it may have been used "
            "already). Start again from the sign-in page.",
            code="oidc.code_rejected",
            status=400,
            detail={"error": _printable(str(getattr(exc, "error", "") or "oauth_error"))},
        ) from None
    except (requests.RequestException, ValueError):
        raise _unreachable() from None
    if not isinstance(token, dict) or not token.get("id_token"):
        raise SignInRefused(
            "The identity provider returned no ID token.",
            code="oidc.id_token_missing",
            status=400,
        )
    return token


_CLAIM_REASONS = {
    "iss": ("oidc.id_token_issuer", "The ID token was issued by another identity provider."),
    "aud": ("oidc.id_token_audience", "The ID token was issued to another application."),
    "azp": ("oidc.id_token_azp", "The ID token was issued to another application."),
    "nonce": (
        "oidc.id_token_nonce",
        "The ID token does not belong to the sign-in you started.",
    ),
}


def _validate_id_token(
    client: _ProviderClient, token: Mapping[str, Any], config: OidcConfig, *, nonce: str
) -> dict[str, Any]:
    claims_options = {
        "iss": {"essential": True, "value": config.issuer},
        "aud": {"essential": True, "value": config.client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    try:
        claims = client.parse_id_token(
            token, nonce=nonce, claims_options=claims_options, leeway=LEEWAY_SECONDS
        )
    except jose_errors.ExpiredTokenError:
        raise _refuse_token("oidc.id_token_expired", "The ID token has expired.") from None
    except jose_errors.ClaimError as exc:
        reason, message = _CLAIM_REASONS.get(
            exc.claim, ("oidc.id_token_claims", "The ID token's claims are not valid.")
        )
        raise _refuse_token(reason, message, claim=exc.claim) from None
    except (jose_errors.UnsupportedAlgorithmError, jose_errors.MissingAlgorithmError):
        raise _refuse_token(
            "oidc.id_token_algorithm",
            "The ID token is not signed with an algorithm this service accepts.",
            header_alg=_token_alg(token),
        ) from None
    except (jose_errors.InvalidKeyIdError, jose_errors.MissingKeyError):
        raise _refuse_token(
            "oidc.id_token_unknown_key",
            "The ID token is signed with a key the identity provider does not publish.",
        ) from None
    except jose_errors.BadSignatureError:
        raise _refuse_token(
            "oidc.id_token_signature", "The ID token's signature is not valid."
        ) from None
    except jose_errors.JoseError:
        raise _refuse_token("oidc.id_token_invalid", "The ID token is malformed.") from None
    except (requests.RequestException, ValueError):
        raise _unreachable() from None
    return dict(claims)


def _identity(
    idp: IdentityProvider,
    client: _ProviderClient,
    token: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    now: datetime,
) -> VerifiedIdentity:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise _refuse_token("oidc.subject_invalid", "The ID token does not name you properly.")
    profile: dict[str, Any] = dict(claims)
    groups_claim = idp.groups_attribute
    email_claim = idp.email_attribute
    if groups_claim not in profile or email_claim not in profile:
        profile = {**_userinfo(idp, client, token, subject), **profile}
    if groups_claim not in profile and groups_claim in (profile.get("_claim_names") or {}):
        # Entra ID's groups overage: too many groups for the token, given by reference only.
        raise SignInRefused(
            "Your identity provider sent a reference instead of your groups (too many groups). "
            "Ask an administrator to limit the groups released to this application.",
            code="oidc.groups_overage",
            status=403,
        )
    email = profile.get(email_claim)
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused(
            f"The identity provider did not release your email address (claim {email_claim}).",
            code="oidc.email_missing",
            status=403,
        )
    if profile.get("email_verified") is False and email_claim == "email":
        raise SignInRefused(
            "The identity provider says your email address is not verified.",
            code="oidc.email_unverified",
            status=403,
        )
    raw_groups = profile.get(groups_claim)
    if raw_groups is not None and not isinstance(raw_groups, list | str):
        raise SignInRefused(
            f"The {groups_claim} claim is not a list.", code="oidc.groups_invalid", status=400
        )
    return VerifiedIdentity(
        idp=idp,
        subject=subject,
        email=email,
        email_verified=profile.get("email_verified") is True,
        groups=groups_from(raw_groups),
        # From the signed ID token only, never from userinfo (SECURITY.md §7).
        mfa=mfa.oidc_facts(idp, claims, now=now),
        auth_context={
            k: claims[k] for k in ("iss", "acr", "amr", "auth_time", "azp") if k in claims
        },
    )


def _userinfo(
    idp: IdentityProvider, client: _ProviderClient, token: Mapping[str, Any], subject: str
) -> dict[str, Any]:
    if not client.server_metadata.get("userinfo_endpoint") or not token.get("access_token"):
        return {}
    try:
        info = dict(client.userinfo(token=dict(token)))
    except (requests.RequestException, ValueError, OAuthError):
        raise SignInRefused(
            "The identity provider's user information could not be read.",
            code="oidc.userinfo_failed",
            status=502,
        ) from None
    # OIDC Core §5.3.2: userinfo for another subject must not be mixed into this person.
    if info.get("sub") != subject:
        raise SignInRefused(
            "The identity provider's user information is about someone else.",
            code="oidc.userinfo_subject_mismatch",
            status=400,
        )
    return info


def _refuse_token(reason: str, message: str, **detail: Any) -> SignInRefused:
    return SignInRefused(message, code=reason, status=400, detail=detail)


def _unreachable() -> SignInRefused:
    return SignInRefused(
        "The identity provider could not be reached or answered something unreadable. "
        "Try again in a moment.",
        code="oidc.provider_unreachable",
        status=502,
    )


def _misconfigured(idp: IdentityProvider, problem: str) -> SignInRefused:
    return SignInRefused(
        "Sign-in with this identity provider is not configured correctly. Tell an administrator.",
        code="oidc.misconfigured",
        status=503,
        detail={"problem": problem},
    )


def _token_alg(token: Mapping[str, Any]) -> str:
    """The ``alg`` an (unverified) ID token claims, for the audit of a refusal."""
    try:
        header_b64 = str(token["id_token"]).split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        return _printable(str(header.get("alg")), 20)
    except (ValueError, KeyError, AttributeError):
        return "unreadable"


_PRINTABLE = re.compile(r"[^A-Za-z0-9_.:/@+-]")


def _printable(value: str, limit: int = 64) -> str:
    """A provider-supplied value made safe for the audit log (no markup, bounded)."""
    return _PRINTABLE.sub("?", value)[:limit]
