"""SAML 2.0 adapter: IdP metadata in, AuthnRequests out, responses validated into identities.

python3-saml (strict) does the XML and signature work; this module adds what SECURITY.md §1
leaves to the application: a transform allow-list and size cap before any signature work, a
required Audience, exact Destination and Recipient, InResponseTo bound to an AuthnRequest we
issued (found by an opaque RelayState), and replay protection in the database. It decides
nothing about access: it returns a ``VerifiedIdentity`` or raises ``SignInRefused``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import onelogin.saml2
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from lxml import etree
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from onelogin.saml2.xmlparser import DTDForbidden, EntitiesForbidden, NotSupportedError

from federation.idp.signin import SignInRefused, VerifiedIdentity, groups_from
from federation.models import IdentityProvider, SamlAuthnRequest, SamlConsumedAssertion, User

# A SAML response is a few kilobytes; anything near this is hostile or broken.
MAX_RESPONSE_CHARS = 256 * 1024
REQUEST_LIFETIME = timedelta(minutes=10)
# python3-saml's ALLOWED_CLOCK_DRIFT (300 s): replay records outlive the assertion by as much.
CLOCK_DRIFT = timedelta(seconds=300)

NS_DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
# Only these transforms run before the signature is known to be good: anything else (XSLT,
# XPath, inclusive c14n with comments) is attacker-chosen work (python3-saml issue #447).
ALLOWED_TRANSFORMS = frozenset({ENVELOPED, EXC_C14N})
ALLOWED_C14N = frozenset({EXC_C14N})
TRANSIENT_NAMEID = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
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


def _request_data(idp: IdentityProvider) -> dict[str, str]:
    url = urlsplit(acs_url(idp))
    return {
        "https": "on" if url.scheme == "https" else "off",
        "http_host": url.netloc,
        "script_name": url.path,
    }


def _settings_dict(idp: IdentityProvider, cfg: SamlIdpConfig) -> dict[str, Any]:
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
            # The IdP picks the authentication method (MFA); asking for one breaks Okta/Entra.
            "requestedAuthnContext": False,
            "signatureAlgorithm": C.RSA_SHA256,
            "digestAlgorithm": C.SHA256,
        },
    }


_settings_cache: dict[tuple[int, str], OneLogin_Saml2_Settings] = {}
_settings_lock = threading.Lock()


def saml_settings(idp: IdentityProvider) -> OneLogin_Saml2_Settings:
    """python3-saml settings for this IdP, built once per configuration and process."""
    cfg = SamlIdpConfig.of(idp)
    if not cfg.signing_certs or not cfg.sso_url:
        raise SignInRefused(
            "saml.idp_not_configured",
            "This identity provider has no signing certificate or sign-in URL configured yet.",
            status=400,
        )
    raw = _settings_dict(idp, cfg)
    key = (idp.pk, hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest())
    cached = _settings_cache.get(key)
    if cached is None:
        try:
            cached = OneLogin_Saml2_Settings(raw, sp_validation_only=False)
        except OneLogin_Saml2_Error:
            raise SignInRefused(
                "saml.idp_not_configured",
                "This identity provider's settings are not valid; an administrator must "
                "register it again.",
                status=400,
            ) from None
        with _settings_lock:
            if len(_settings_cache) > 256:
                _settings_cache.clear()
            _settings_cache[key] = cached
    return cached


# python3-saml 1.16 re-reads and recompiles its protocol XSD (with its imports) on every
# strict is_valid, ~1.5 ms. Same contract, compiled once per thread (lxml validators are not
# shared between threads).
_schemas = threading.local()
_stock_validate_xml = OneLogin_Saml2_XML.validate_xml


def _validate_xml_cached(xml: Any, schema: str, debug: bool = False) -> Any:
    try:
        xml = OneLogin_Saml2_XML.to_etree(xml)
    except Exception:
        return "unloaded_xml"
    compiled_by_name: dict[str, etree.XMLSchema] = _schemas.__dict__.setdefault("by_name", {})
    compiled = compiled_by_name.get(schema)
    if compiled is None:
        schema_file = Path(onelogin.saml2.__file__).parent / "schemas" / schema
        with open(schema_file, "rb") as f_schema:
            compiled = etree.XMLSchema(etree.parse(f_schema))
        compiled_by_name[schema] = compiled
    if not compiled.validate(xml):
        return "invalid_xml"
    return xml


def use_compiled_schemas(enabled: bool = True) -> None:
    """Install (default) or remove the compiled-schema cache in python3-saml."""
    OneLogin_Saml2_XML.validate_xml = staticmethod(
        _validate_xml_cached if enabled else _stock_validate_xml
    )


use_compiled_schemas()


# --------------------------------------------------------------------------- SP-initiated login


def safe_next_path(candidate: str | None) -> str:
    """Only a local absolute path is ever a redirect target (no open redirect)."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return "/"
    if not url_has_allowed_host_and_scheme(candidate, allowed_hosts=None, require_https=False):
        return "/"
    if any(ch in candidate for ch in "\\\r\n\t\x00"):
        return "/"
    return candidate


def start_login(
    idp: IdentityProvider, *, next_path: str | None = None, now: datetime | None = None
) -> str:
    """Record a fresh AuthnRequest under an opaque RelayState and return the IdP redirect URL."""
    now = now or timezone.now()
    if idp.protocol != IdentityProvider.Protocol.SAML or not idp.enabled:
        raise SignInRefused(
            "saml.unknown_idp", "This identity provider is not available.", status=404
        )
    sp_settings = saml_settings(idp)
    authn = OneLogin_Saml2_Authn_Request(sp_settings, set_nameid_policy=False)
    relay_state = secrets.token_urlsafe(32)
    SamlAuthnRequest.objects.create(
        relay_state=relay_state,
        request_id=authn.get_id(),
        idp=idp,
        next_path=safe_next_path(next_path),
        created_at=now,
        expires_at=now + REQUEST_LIFETIME,
    )
    sso_url = SamlIdpConfig.of(idp).sso_url
    query = urlencode({"SAMLRequest": authn.get_request(deflate=True), "RelayState": relay_state})
    return f"{sso_url}{'&' if '?' in sso_url else '?'}{query}"


# --------------------------------------------------------------------------- the response


@dataclass(frozen=True)
class SamlSignIn:
    identity: VerifiedIdentity
    next_path: str
    # Marks the AuthnRequest and the assertion id used; pass to complete_sign_in(consume=...).
    consume: Callable[[], None]


class IdpInitiatedLogin(Exception):
    """An unsolicited response from an IdP allowed to start logins: restart SP-initiated."""


@dataclass
class _Refusal:
    reason: str
    message: str
    status: int = 403
    detail: dict[str, Any] = field(default_factory=dict)

    def exc(self) -> SignInRefused:
        return SignInRefused(self.reason, self.message, status=self.status, detail=self.detail)


V = OneLogin_Saml2_ValidationError
# python3-saml error codes → (our reason, what the person reads).
_LIBRARY_REFUSALS: dict[int, tuple[str, str]] = {
    V.NO_SIGNATURE_FOUND: ("saml.unsigned", "The sign-in response was not signed."),
    V.NO_SIGNED_ASSERTION: ("saml.unsigned", "The sign-in assertion was not signed."),
    V.NO_SIGNED_MESSAGE: ("saml.unsigned", "The sign-in response message was not signed."),
    V.INVALID_SIGNATURE: (
        "saml.bad_signature",
        "The sign-in response's signature is not valid for this identity provider's certificate.",
    ),
    V.DEPRECATED_SIGNATURE_METHOD: (
        "saml.deprecated_algorithm",
        "The sign-in response was signed with a deprecated algorithm (SHA-1).",
    ),
    V.DEPRECATED_DIGEST_METHOD: (
        "saml.deprecated_algorithm",
        "The sign-in response was signed with a deprecated algorithm (SHA-1).",
    ),
    V.WRONG_AUDIENCE: ("saml.audience", "The sign-in response was meant for another service."),
    V.WRONG_DESTINATION: ("saml.destination", "The sign-in response was sent to another address."),
    V.EMPTY_DESTINATION: ("saml.destination", "The sign-in response has an empty destination."),
    V.WRONG_ISSUER: ("saml.issuer", "The sign-in response comes from another identity provider."),
    V.ISSUER_MULTIPLE_IN_RESPONSE: ("saml.issuer", "The sign-in response names several issuers."),
    V.ISSUER_NOT_FOUND_IN_ASSERTION: ("saml.issuer", "The sign-in assertion names no issuer."),
    V.ASSERTION_EXPIRED: (
        "saml.expired",
        "The sign-in response has expired. Please sign in again.",
    ),
    V.RESPONSE_EXPIRED: ("saml.expired", "The sign-in response has expired. Please sign in again."),
    V.SESSION_EXPIRED: ("saml.expired", "The sign-in session has expired. Please sign in again."),
    V.ASSERTION_TOO_EARLY: (
        "saml.not_yet_valid",
        "The sign-in response is not valid yet (check the identity provider's clock).",
    ),
    V.WRONG_SUBJECTCONFIRMATION: (
        "saml.subject_confirmation",
        "The sign-in response is expired or addressed to another service.",
    ),
    V.WRONG_INRESPONSETO: (
        "saml.in_response_to",
        "The sign-in response does not answer the sign-in this browser started.",
    ),
    V.STATUS_CODE_IS_NOT_SUCCESS: (
        "saml.idp_status",
        "The identity provider did not sign you in (it reported an error).",
    ),
    V.ENCRYPTED_ATTRIBUTES: ("saml.unsupported", "Encrypted attributes are not supported."),
    V.DUPLICATED_ATTRIBUTE_NAME_FOUND: (
        "saml.malformed",
        "The sign-in response repeats an attribute name.",
    ),
    V.NO_NAMEID: ("saml.no_subject", "The sign-in response does not name a person."),
    V.EMPTY_NAMEID: ("saml.no_subject", "The sign-in response does not name a person."),
}
_STRUCTURE_MESSAGE = (
    "The sign-in response's structure is not valid (its signed parts do not match its content)."
)


def _library_refusal(err: Exception) -> _Refusal:
    code = getattr(err, "code", None)
    if isinstance(err, OneLogin_Saml2_Error) and code == OneLogin_Saml2_Error.PRIVATE_KEY_NOT_FOUND:
        # We hold no decryption key: encryption is not authentication (SECURITY.md §1).
        return _Refusal(
            "saml.unsupported",
            "Encrypted assertions are not supported; the identity provider must send a signed, "
            "unencrypted assertion.",
            400,
        )
    if isinstance(err, OneLogin_Saml2_ValidationError) and code in _LIBRARY_REFUSALS:
        reason, message = _LIBRARY_REFUSALS[code]
        return _Refusal(reason, message)
    # The library's error code (not its message, which may quote document content).
    return _Refusal(
        "saml.structure",
        _STRUCTURE_MESSAGE,
        detail={"check": type(err).__name__, "library_code": code},
    )


def _decode(saml_response: str) -> bytes:
    if len(saml_response) > MAX_RESPONSE_CHARS:
        raise _Refusal("saml.too_large", "The sign-in response is too large.", 413).exc()
    compact = "".join(saml_response.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _Refusal(
            "saml.malformed", "The sign-in response is not valid base64.", 400
        ).exc() from None


def _check_structure(document: Any) -> None:
    """Checks that run before python3-saml touches a signature (hostile-input bounds)."""
    for signature in document.iter(f"{{{NS_DS}}}Signature"):
        parent = signature.getparent()
        references = signature.findall(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}Reference")
        parent_id = parent.get("ID") if parent is not None else None
        if len(references) != 1 or not parent_id or references[0].get("URI") != f"#{parent_id}":
            raise _Refusal("saml.structure", _STRUCTURE_MESSAGE).exc()
        for method in signature.iter(f"{{{NS_DS}}}CanonicalizationMethod"):
            if method.get("Algorithm") not in ALLOWED_C14N:
                raise _Refusal(
                    "saml.transform",
                    "The sign-in response uses a canonicalization method this service refuses.",
                    400,
                ).exc()
        for transform in signature.iter(f"{{{NS_DS}}}Transform"):
            if transform.get("Algorithm") not in ALLOWED_TRANSFORMS:
                raise _Refusal(
                    "saml.transform",
                    "The sign-in response uses a signature transform this service refuses.",
                    400,
                ).exc()
        if signature.find(f"{{{NS_DS}}}Object") is not None:
            raise _Refusal("saml.structure", _STRUCTURE_MESSAGE).exc()


# The encoding named in an XML declaration (``<?xml version="1.0" encoding="..."?>``).
_DECLARED_ENCODING = re.compile(
    rb"""\A(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*["']([^"']*)["']"""
)


def _require_utf8(xml: bytes) -> None:
    # The DTD and comment scans below look for ASCII bytes; in UTF-16 or UTF-32 (with or without
    # a BOM) or under a declared non-UTF-8 encoding they would miss ``<!--`` while the parser
    # still reads it. SAML IdPs send UTF-8, so anything else is refused before any scan.
    declared = _DECLARED_ENCODING.match(xml)
    if (
        b"\x00" in xml
        or (declared is not None and declared.group(1).lower() != b"utf-8")
        or not _is_utf8(xml)
    ):
        raise _Refusal(
            "saml.encoding", "The sign-in response is not UTF-8 encoded, which is refused.", 400
        ).exc()


def _is_utf8(xml: bytes) -> bool:
    try:
        xml.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse(xml: bytes, sp_settings: OneLogin_Saml2_Settings, b64: str) -> OneLogin_Saml2_Response:
    _require_utf8(xml)
    if b"<!doctype" in xml.lower():
        raise _Refusal(
            "saml.dtd", "The sign-in response contains a DTD or entities, which are refused.", 400
        ).exc()
    # Comments split text nodes; the parser drops them, yet a legitimate IdP never sends one in
    # a response, so their presence is refused outright (CVE-2017-11427 class, VU#475445).
    if b"<!--" in xml:
        raise _Refusal(
            "saml.comment", "The sign-in response contains XML comments, which are refused.", 400
        ).exc()
    try:
        response = OneLogin_Saml2_Response(sp_settings, b64)
    except (DTDForbidden, EntitiesForbidden, NotSupportedError):
        raise _Refusal(
            "saml.dtd", "The sign-in response contains a DTD or entities, which are refused.", 400
        ).exc() from None
    except etree.XMLSyntaxError:
        raise _Refusal(
            "saml.malformed", "The sign-in response is not well-formed XML.", 400
        ).exc() from None
    except (OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError) as err:
        raise _library_refusal(err).exc() from None
    except Exception:
        raise _Refusal(
            "saml.malformed", "The sign-in response could not be read.", 400
        ).exc() from None
    root = response.document
    if root.tag != f"{{{C.NS_SAMLP}}}Response":
        raise _Refusal("saml.malformed", "The message is not a SAML response.", 400).exc()
    _check_structure(root)
    return response


def _pending_request(idp: IdentityProvider, relay_state: str, now: datetime) -> SamlAuthnRequest:
    pending = SamlAuthnRequest.objects.filter(relay_state=relay_state).first()
    if pending is None or pending.idp_id != idp.pk:
        raise _Refusal(
            "saml.unsolicited",
            "This sign-in response does not answer a sign-in started here. Please sign in again.",
        ).exc()
    if pending.consumed_at is not None:
        raise _Refusal("saml.replay", "This sign-in response was already used.").exc()
    if pending.expires_at <= now:
        raise _Refusal(
            "saml.request_expired", "The sign-in took too long. Please sign in again."
        ).exc()
    return pending


def _app_checks(
    idp: IdentityProvider, response: OneLogin_Saml2_Response, pending: SamlAuthnRequest
) -> datetime:
    """The checks python3-saml leaves to us; returns the assertion's latest NotOnOrAfter."""
    expected_acs = acs_url(idp)
    if response.document.get("Destination") != expected_acs:
        raise _Refusal(*_LIBRARY_REFUSALS[V.WRONG_DESTINATION]).exc()
    if response.get_in_response_to() != pending.request_id:
        raise _Refusal(*_LIBRARY_REFUSALS[V.WRONG_INRESPONSETO]).exc()

    restrictions = response._query_assertion("/saml:Conditions/saml:AudienceRestriction")
    audience = sp_entity_id(idp)
    if not restrictions or any(
        audience
        not in [OneLogin_Saml2_XML.element_text(a) for a in r.findall(f"{{{C.NS_SAML}}}Audience")]
        for r in restrictions
    ):
        raise _Refusal(*_LIBRARY_REFUSALS[V.WRONG_AUDIENCE]).exc()

    confirmations = response._query_assertion(
        "/saml:Subject/saml:SubjectConfirmation[@Method='urn:oasis:names:tc:SAML:2.0:cm:bearer']"
        "/saml:SubjectConfirmationData"
    )
    latest: datetime | None = None
    for data in confirmations:
        not_on_or_after = data.get("NotOnOrAfter")
        if (
            data.get("Recipient") != expected_acs
            or data.get("InResponseTo") != pending.request_id
            or not not_on_or_after
        ):
            raise _Refusal(*_LIBRARY_REFUSALS[V.WRONG_SUBJECTCONFIRMATION]).exc()
        moment = _saml_time(not_on_or_after)
        latest = moment if latest is None else max(latest, moment)
    if latest is None:
        raise _Refusal(*_LIBRARY_REFUSALS[V.WRONG_SUBJECTCONFIRMATION]).exc()
    for conditions in response._query_assertion("/saml:Conditions[@NotOnOrAfter]"):
        latest = max(latest, _saml_time(conditions.get("NotOnOrAfter")))
    return latest


def _saml_time(value: str) -> datetime:
    return datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), tz=UTC)


def _first(attributes: dict[str, list[str]], name: str) -> str:
    values = attributes.get(name) or []
    return str(values[0]).strip() if values else ""


def _identity(idp: IdentityProvider, response: OneLogin_Saml2_Response) -> VerifiedIdentity:
    cfg = SamlIdpConfig.of(idp)
    try:
        attributes: dict[str, list[str]] = response.get_attributes()
        name_id = response.get_nameid() or ""
        name_id_format = response.get_nameid_format() or ""
    except (OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError) as err:
        raise _library_refusal(err).exc() from None
    if cfg.subject_attribute:
        subject = _first(attributes, cfg.subject_attribute)
    else:
        if name_id_format == TRANSIENT_NAMEID:
            raise _Refusal(
                "saml.transient_subject",
                "The identity provider sent a one-time (transient) name for you; it must send a "
                "persistent one. Ask an administrator to fix the identity provider settings.",
            ).exc()
        subject = name_id.strip()
    if not subject:
        raise _Refusal(*_LIBRARY_REFUSALS[V.NO_NAMEID]).exc()
    email = _first(attributes, idp.email_attribute)
    if not email:
        raise _Refusal(
            "saml.no_email",
            f"The identity provider did not send your email address (attribute "
            f"“{idp.email_attribute}”).",
        ).exc()
    session_expiry = response.get_session_not_on_or_after()
    return VerifiedIdentity(
        idp=idp,
        subject=subject,
        email=email,
        groups=groups_from(attributes.get(idp.groups_attribute)),
        manager=_first(attributes, idp.manager_attribute) if idp.manager_attribute else "",
        auth_context={
            "protocol": "saml",
            "assertion_id": response.get_assertion_id(),
            "name_id": name_id,
            "name_id_format": name_id_format,
            "session_index": response.get_session_index(),
            "authn_contexts": response.get_authn_contexts(),
            "session_not_on_or_after": (
                datetime.fromtimestamp(session_expiry, tz=UTC).isoformat()
                if session_expiry
                else None
            ),
        },
    )


def validate_response(
    idp: IdentityProvider,
    *,
    saml_response: str | None,
    relay_state: str | None,
    now: datetime | None = None,
) -> SamlSignIn:
    """Validate a POSTed response fully. Writes nothing.

    Returns the identity, the local path to go to, and ``consume``, which marks the AuthnRequest
    and the assertion id used (raising ``SignInRefused`` on a replay) and must run in the
    sign-in transaction. Raises ``SignInRefused`` naming the fault, or ``IdpInitiatedLogin``
    for an unsolicited response from an IdP configured to allow them (the caller restarts an
    SP-initiated login; nobody is signed in).
    """
    now = now or timezone.now()
    if idp.protocol != IdentityProvider.Protocol.SAML or not idp.enabled:
        raise _Refusal("saml.unknown_idp", "This identity provider is not available.", 404).exc()
    if not saml_response:
        raise _Refusal("saml.missing_response", "No sign-in response was received.", 400).exc()
    xml = _decode(saml_response)
    if not relay_state:
        if SamlIdpConfig.of(idp).allow_idp_initiated:
            raise IdpInitiatedLogin
        raise _Refusal(
            "saml.unsolicited",
            "This sign-in was not started here (identity-provider-initiated sign-in is off).",
        ).exc()
    pending = _pending_request(idp, relay_state, now)
    sp_settings = saml_settings(idp)
    response = _parse(xml, sp_settings, saml_response)
    try:
        response.is_valid(_request_data(idp), request_id=pending.request_id, raise_exceptions=True)
    except Exception as err:
        raise _library_refusal(err).exc() from None
    not_on_or_after = _app_checks(idp, response, pending)
    identity = _identity(idp, response)
    consume = _consumer(
        idp, pending, str(response.get_assertion_id()), not_on_or_after + CLOCK_DRIFT, now
    )
    return SamlSignIn(identity=identity, next_path=pending.next_path, consume=consume)


def _consumer(
    idp: IdentityProvider,
    pending: SamlAuthnRequest,
    assertion_id: str,
    keep_until: datetime,
    now: datetime,
) -> Callable[[], None]:
    """Single use across instances: the conditional UPDATE and the unique insert are the
    arbiters. Runs inside the sign-in transaction, so a refusal writes nothing."""

    def consume() -> None:
        replay = _Refusal("saml.replay", "This sign-in response was already used.")
        used = SamlAuthnRequest.objects.filter(pk=pending.pk, consumed_at__isnull=True).update(
            consumed_at=now
        )
        if used != 1:
            raise replay.exc()
        # ON CONFLICT instead of a savepoint around the insert: same arbiter (the unique
        # constraint), two fewer round trips on the sign-in path.
        meta = SamlConsumedAssertion._meta
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {meta.db_table} (idp_id, assertion_id, not_on_or_after, consumed_at) "  # noqa: S608
                "VALUES (%s, %s, %s, %s) ON CONFLICT (idp_id, assertion_id) DO NOTHING",
                [idp.pk, assertion_id, keep_until, now],
            )
            inserted = cursor.rowcount
        if inserted != 1:
            raise replay.exc()

    return consume


def purge_expired(*, now: datetime | None = None) -> int:
    """Forget replay records and AuthnRequests that can no longer matter."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        gone, _ = SamlConsumedAssertion.objects.filter(not_on_or_after__lt=now).delete()
        old, _ = SamlAuthnRequest.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    return gone + old


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
