"""SAML 2.0 service provider: per-IdP settings, AuthnRequests out, SP metadata, single logout.

python3-saml (strict) does the XML and signature work. Responses are validated in
``saml_response.py``; the compiled-schema cache python3-saml uses is ``saml_schemas.py``; the IdP
registry (metadata in) is ``saml_metadata.py``. Nothing here decides about access.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from federation.idp.identity import SignInRefused, safe_next
from federation.idp.mfa import mfa_contexts
from federation.models import IdentityProvider, SamlAuthnRequest, User

# AuthnRequests we issued are answerable for this long.
REQUEST_LIFETIME = timedelta(minutes=10)

NS_DS = "http://www.w3.org/2000/09/xmldsig#"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SamlIdpConfig:
    """The SAML part of ``IdentityProvider.config`` (a JSON object), typed."""

    sso_url: str
    signing_certs: tuple[str, ...]  # base64 DER, every cert the metadata lists (rollover)
    slo_url: str = ""
    metadata_url: str = ""
    metadata_signing_cert: str = ""  # when set, metadata must carry a valid signature by it
    want_messages_signed: bool = False
    allow_idp_initiated: bool = False
    subject_attribute: str = ""  # empty: the NameID is the immutable subject
    # A step-up names the IdP's MFA classes in a RequestedAuthnContext (off for Entra ID).
    request_authn_context: bool = True

    @classmethod
    def of(cls, idp: IdentityProvider) -> SamlIdpConfig:
        cfg = idp.config or {}
        return cls(
            sso_url=str(cfg.get("sso_url", "")),
            signing_certs=tuple(str(c) for c in cfg.get("signing_certs", [])),
            slo_url=str(cfg.get("slo_url", "")),
            metadata_url=str(cfg.get("metadata_url", "")),
            metadata_signing_cert=str(cfg.get("metadata_signing_cert", "")),
            want_messages_signed=bool(cfg.get("want_messages_signed", False)),
            allow_idp_initiated=bool(cfg.get("allow_idp_initiated", False)),
            subject_attribute=str(cfg.get("subject_attribute", "")),
            request_authn_context=cfg.get("request_authn_context", True) is not False,
        )


def sp_entity_id(idp: IdentityProvider) -> str:
    """Our entity id towards this IdP: its metadata URL, so every IdP sees its own audience."""
    return f"{settings.BASE_URL}/saml/{idp.slug}/metadata/"


def acs_url(idp: IdentityProvider) -> str:
    """Built from settings.BASE_URL only, never from Host or X-Forwarded-* headers."""
    return f"{settings.BASE_URL}/saml/{idp.slug}/acs/"


def sls_url(idp: IdentityProvider) -> str:
    """Where the IdP returns the browser after single logout."""
    return f"{settings.BASE_URL}/saml/{idp.slug}/sls/"


def request_data(idp: IdentityProvider) -> dict[str, str]:
    url = urlsplit(acs_url(idp))
    return {
        "https": "on" if url.scheme == "https" else "off",
        "http_host": url.netloc,
        "script_name": url.path,
    }


def _settings_dict(
    idp: IdentityProvider, cfg: SamlIdpConfig, requested: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": sp_entity_id(idp),
            "assertionConsumerService": {"url": acs_url(idp), "binding": BINDING_POST},
            "singleLogoutService": {"url": sls_url(idp), "binding": BINDING_REDIRECT},
            "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        },
        "idp": {
            "entityId": idp.entity_id,
            "singleSignOnService": {"url": cfg.sso_url, "binding": BINDING_REDIRECT},
            # Pinned certificates only: never a fingerprint, never the KeyInfo's own cert.
            "x509certMulti": {"signing": list(cfg.signing_certs)},
            **(
                {"singleLogoutService": {"url": cfg.slo_url, "binding": BINDING_REDIRECT}}
                if cfg.slo_url
                else {}
            ),
        },
        "security": {
            "wantAssertionsSigned": True,
            "wantMessagesSigned": cfg.want_messages_signed,
            "rejectDeprecatedAlgorithm": True,
            "wantNameId": True,
            "wantAttributeStatement": False,
            "allowRepeatAttributeName": False,
            "authnRequestsSigned": False,
            # An ordinary sign-in lets the IdP pick the method: asking for one breaks Okta and
            # Entra ID. Only a step-up names the MFA classes (``start_login(step_up=True)``).
            "requestedAuthnContext": list(requested) if requested else False,
            "requestedAuthnContextComparison": "exact",
            "signatureAlgorithm": C.RSA_SHA256,
            "digestAlgorithm": C.SHA256,
        },
    }


_settings_cache: dict[tuple[int, str], OneLogin_Saml2_Settings] = {}
_settings_lock = threading.Lock()


def saml_settings(
    idp: IdentityProvider, *, requested: tuple[str, ...] = ()
) -> OneLogin_Saml2_Settings:
    """python3-saml settings for this IdP, built once per configuration and process;
    ``requested``: the AuthnContextClassRefs a step-up AuthnRequest asks for."""
    cfg = SamlIdpConfig.of(idp)
    if not cfg.signing_certs or not cfg.sso_url:
        raise SignInRefused(
            "This identity provider has no signing certificate or sign-in URL configured yet.",
            code="saml.idp_not_configured",
            status=400,
        )
    raw = _settings_dict(idp, cfg, requested)
    key = (idp.pk, hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest())
    cached = _settings_cache.get(key)
    if cached is None:
        try:
            cached = OneLogin_Saml2_Settings(raw, sp_validation_only=False)
        except OneLogin_Saml2_Error:
            raise SignInRefused(
                "This identity provider's settings are not valid; an administrator must "
                "register it again.",
                code="saml.idp_not_configured",
                status=400,
            ) from None
        with _settings_lock:
            if len(_settings_cache) > 256:
                _settings_cache.clear()
            _settings_cache[key] = cached
    return cached


# --------------------------------------------------------------------------- SP-initiated login


@dataclass(frozen=True)
class SamlLoginStart:
    redirect_url: str  # the IdP's sign-in URL carrying the AuthnRequest
    # Set as the browser-binding cookie (``browser_cookie``); only its hash is stored.
    browser_secret: str


@dataclass(frozen=True)
class BrowserCookie:
    """Where the login-start cookie lives: only the ACS gets it back, on the IdP's POST."""

    name: str
    path: str
    max_age: int
    secure: bool
    samesite: Literal["Lax", "None"]


def browser_cookie(idp: IdentityProvider) -> BrowserCookie:
    # The IdP's POST to the ACS is cross-site: a Lax cookie would not ride it, so under https
    # the cookie is SameSite=None (which browsers accept only with Secure). Plain http is
    # loopback only (demo, tests) where the IdP is same-site and Lax is sent.
    secure = urlsplit(settings.BASE_URL).scheme == "https"
    return BrowserCookie(
        name="__Secure-fedaccess-saml" if secure else "fedaccess-saml",
        path=urlsplit(acs_url(idp)).path,
        max_age=int(REQUEST_LIFETIME.total_seconds()),
        secure=secure,
        samesite="None" if secure else "Lax",
    )


def browser_binding(secret: str) -> str:
    """What a pending AuthnRequest stores of its browser's cookie."""
    return hashlib.sha256(secret.encode()).hexdigest()


def step_up_contexts(idp: IdentityProvider) -> tuple[str, ...]:
    """The classes a step-up AuthnRequest names: the IdP's MFA classes, unless it was
    registered with ``--no-requested-authn-context``."""
    if not SamlIdpConfig.of(idp).request_authn_context:
        return ()
    return tuple(sorted(mfa_contexts(idp)))


def start_login(
    idp: IdentityProvider, *, next_path: str | None, now: datetime, step_up: bool = False
) -> SamlLoginStart:
    """Record a fresh AuthnRequest under an opaque RelayState, bound to a fresh browser secret
    (login CSRF: a response answers only the browser that started its login), and return the
    IdP redirect URL with that secret, which the caller sets as ``browser_cookie(idp)``.

    ``step_up`` asks for a fresh multi-factor sign-in: ``ForceAuthn="true"`` and, unless the
    IdP opted out, a RequestedAuthnContext naming its MFA classes (SPEC §4 Step-up). Whether
    the IdP obliged is judged on the response alone (federation/idp/mfa.py).

    ``idp`` comes from ``identity.load_idp`` (known, enabled, SAML). Raises ``SignInRefused``
    when its settings are incomplete.
    """
    sp_settings = saml_settings(idp, requested=step_up_contexts(idp) if step_up else ())
    authn = OneLogin_Saml2_Authn_Request(sp_settings, force_authn=step_up, set_nameid_policy=False)
    relay_state = secrets.token_urlsafe(32)
    browser_secret = secrets.token_urlsafe(32)
    SamlAuthnRequest.objects.create(
        relay_state=relay_state,
        request_id=authn.get_id(),
        idp=idp,
        next_path=safe_next(next_path),
        browser_binding=browser_binding(browser_secret),
        created_at=now,
        expires_at=now + REQUEST_LIFETIME,
    )
    sso_url = SamlIdpConfig.of(idp).sso_url
    query = urlencode({"SAMLRequest": authn.get_request(deflate=True), "RelayState": relay_state})
    return SamlLoginStart(
        redirect_url=f"{sso_url}{'&' if '?' in sso_url else '?'}{query}",
        browser_secret=browser_secret,
    )


def sp_metadata(idp: IdentityProvider) -> str:
    """This service's SP metadata XML for one IdP (entity id, ACS URL)."""
    xml = saml_settings(idp).get_sp_metadata()
    return xml.decode() if isinstance(xml, bytes) else str(xml)


def logout_url(user: User) -> str:
    """The IdP's single-logout URL carrying a LogoutRequest for this person's latest SAML
    session, or "" when their IdP offers no single logout (or is not SAML)."""
    idp = user.idp
    if idp is None or idp.protocol != IdentityProvider.Protocol.SAML:
        return ""
    cfg = SamlIdpConfig.of(idp)
    if not (cfg.slo_url and cfg.sso_url and cfg.signing_certs):
        return ""
    last = user.sign_ins.filter(idp=idp).order_by("-at").first()
    context = dict(last.auth_context) if last is not None else {}
    request = OneLogin_Saml2_Logout_Request(
        saml_settings(idp),
        name_id=str(context.get("name_id") or user.subject),
        session_index=context.get("session_index") or None,
        name_id_format=context.get("name_id_format") or None,
    )
    query = urlencode({"SAMLRequest": request.get_request(deflate=True)})
    return f"{cfg.slo_url}{'&' if '?' in cfg.slo_url else '?'}{query}"
