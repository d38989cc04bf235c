"""Registering an OpenID provider (SPEC §3.2 ``add_oidc_idp``): discovery, checks, storage.

Discovery happens here, once, by an administrator; sign-in uses only what was stored, so a
provider whose discovery document later changes (or is spoofed) cannot change our endpoints or
algorithms behind our back. Run the command again to pick up a provider's changes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from federation.idp.client_secrets import ENV_KEY, SEALED_KEY, seal_client_secret
from federation.idp.oidc import ASYMMETRIC_ALGORITHMS, HTTP_TIMEOUT_SECONDS, callback_url
from federation.idp.registry import IdpFields, RegistrationRefused, save_idp
from federation.models import IdentityProvider, User

__all__ = ["Registration", "RegistrationRefused", "discover", "register_oidc_idp"]

DEFAULT_SCOPES = ("openid", "email", "profile")
MAX_DISCOVERY_BYTES = 512 * 1024


@dataclass(frozen=True)
class Registration:
    idp: IdentityProvider
    created: bool
    redirect_uri: str


def discover(issuer: str) -> dict[str, Any]:
    """Fetch and check ``<issuer>/.well-known/openid-configuration`` (OIDC Discovery §4).

    The document's ``issuer`` must equal the given issuer exactly (§4.3), and every endpoint must
    use https unless the issuer is a loopback address (tests, local development).
    """
    _check_url("issuer", issuer, issuer)
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False)
    except requests.RequestException as exc:
        raise RegistrationRefused(f"discovery failed: {url} is unreachable ({exc})") from None
    if response.status_code != 200:
        raise RegistrationRefused(f"discovery failed: {url} answered HTTP {response.status_code}")
    if len(response.content) > MAX_DISCOVERY_BYTES:
        raise RegistrationRefused(f"discovery failed: {url} is unreasonably large")
    try:
        document = response.json()
    except ValueError:
        raise RegistrationRefused(f"discovery failed: {url} is not JSON") from None
    if not isinstance(document, dict):
        raise RegistrationRefused(f"discovery failed: {url} is not a JSON object")
    if document.get("issuer") != issuer:
        raise RegistrationRefused(
            f"discovery document's issuer {document.get('issuer')!r} is not {issuer!r} "
            "(they must be identical, OIDC Discovery §4.3)"
        )
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(field)
        if not isinstance(value, str) or not value:
            raise RegistrationRefused(f"discovery document has no {field}")
        _check_url(field, value, issuer)
    if document.get("userinfo_endpoint"):
        _check_url("userinfo_endpoint", str(document["userinfo_endpoint"]), issuer)
    if "code" not in document.get("response_types_supported", []):
        raise RegistrationRefused("the provider does not support the authorization code flow")
    methods = document.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise RegistrationRefused("the provider does not support PKCE with S256")
    return document


def register_oidc_idp(
    slug: str,
    *,
    issuer: str,
    client_id: str,
    client_secret: str | None = None,
    client_secret_env: str | None = None,
    groups_claim: str = "groups",
    email_claim: str = "email",
    scopes: str | None = None,
    id_token_algorithm: str | None = None,
    display_name: str = "",
    actor: User | str,
    now: datetime,
) -> Registration:
    """Discover the provider and store (or update) the IdP ``slug`` with its client.

    Exactly one of ``client_secret`` (sealed before storage) and ``client_secret_env`` (the name
    of the variable holding it at run time) is required. Raises ``RegistrationRefused``.
    """
    if (client_secret is None) == (client_secret_env is None):
        raise RegistrationRefused("give either a client secret or the variable that holds it")
    if not client_id:
        raise RegistrationRefused("the client id is empty")
    document = discover(issuer)
    algorithm = _choose_algorithm(document, id_token_algorithm)
    scope_list = (scopes or "").split() or _default_scopes(document, groups_claim)
    if "openid" not in scope_list:
        raise RegistrationRefused("the scopes must include openid")
    auth_methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if "client_secret_basic" in auth_methods:
        auth_method = "client_secret_basic"
    elif "client_secret_post" in auth_methods:
        auth_method = "client_secret_post"
    else:
        raise RegistrationRefused(
            "the provider supports neither client_secret_basic nor client_secret_post"
        )
    config: dict[str, Any] = {
        "client_id": client_id,
        "authorization_endpoint": document["authorization_endpoint"],
        "token_endpoint": document["token_endpoint"],
        "jwks_uri": document["jwks_uri"],
        "userinfo_endpoint": document.get("userinfo_endpoint") or "",
        "scopes": " ".join(scope_list),
        "id_token_algorithms": [algorithm],
        "token_endpoint_auth_method": auth_method,
        "iss_parameter_supported": bool(
            document.get("authorization_response_iss_parameter_supported", False)
        ),
    }
    if client_secret is not None:
        config[SEALED_KEY] = seal_client_secret(client_secret)
    else:
        config[ENV_KEY] = client_secret_env

    public = {k: v for k, v in config.items() if k not in (SEALED_KEY, ENV_KEY)}
    idp, created = save_idp(
        slug,
        IdentityProvider.Protocol.OIDC,
        # The whole configuration is replaced: a secret switched from sealed to environment
        # (or back) must not leave the other one behind.
        IdpFields(
            entity_id=issuer,
            config=lambda _stored: config,
            groups_attribute=groups_claim,
            email_attribute=email_claim,
            display_name=display_name,
        ),
        event_type=lambda created: "idp.registered" if created else "idp.updated",
        audit_data={
            "protocol": "oidc",
            "issuer": issuer,
            "groups_claim": groups_claim,
            "email_claim": email_claim,
            "secret_from": "environment" if client_secret_env else "sealed",
            **public,
        },
        actor=actor,
        now=now,
    )
    return Registration(idp=idp, created=created, redirect_uri=callback_url(idp))


def _choose_algorithm(document: dict[str, Any], wanted: str | None) -> str:
    supported = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    if wanted is not None:
        if wanted not in ASYMMETRIC_ALGORITHMS:
            raise RegistrationRefused(f"{wanted} is not an accepted ID token algorithm")
        if wanted not in supported:
            raise RegistrationRefused(f"the provider does not sign ID tokens with {wanted}")
        return wanted
    # RS256 is the algorithm every OpenID provider must support (OIDC Core §15.1).
    if "RS256" in supported:
        return "RS256"
    usable = [alg for alg in supported if alg in ASYMMETRIC_ALGORITHMS]
    if not usable:
        raise RegistrationRefused("the provider signs ID tokens with no accepted algorithm")
    return str(usable[0])


def _default_scopes(document: dict[str, Any], groups_claim: str) -> list[str]:
    scopes = list(DEFAULT_SCOPES)
    # Okta and others release the groups claim only for a `groups` scope; providers that do not
    # advertise such a scope (Entra ID) reject unknown scopes, so ask for it only when offered.
    if groups_claim in document.get("scopes_supported", []):
        scopes.append(groups_claim)
    return scopes


def _check_url(name: str, url: str, issuer: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if (
        parts.scheme == "http"
        and _is_loopback(parts.hostname)
        and _is_loopback(urlsplit(issuer).hostname)
    ):
        return
    raise RegistrationRefused(
        f"{name} {url!r} must be an https URL (plain http only for a loopback issuer)"
    )


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
