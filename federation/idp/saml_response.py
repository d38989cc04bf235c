"""Validating a POSTed SAML response into a ``VerifiedIdentity`` (SECURITY.md §1).

python3-saml (strict) checks the XML and the signature against the IdP's pinned certificates;
this module adds what it leaves to the application: a transform allow-list and size cap before
any signature work, a required Audience, exact Destination and Recipient, InResponseTo bound to
an AuthnRequest we issued (found by an opaque RelayState), and replay protection in the database.
Every fault is a ``SignInRefused`` with a stable ``saml.*`` code.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from onelogin.saml2.xmlparser import DTDForbidden, EntitiesForbidden, NotSupportedError

from federation.idp import mfa, saml_requests
from federation.idp.identity import SignInRefused, SingleUse, VerifiedIdentity, groups_from
from federation.idp.saml import (
    NS_DS,
    SamlIdpConfig,
    acs_url,
    request_data,
    saml_settings,
    sp_entity_id,
)
from federation.models import IdentityProvider, SamlAuthnRequest

# A SAML response is a few kilobytes; anything near this is hostile or broken.
MAX_RESPONSE_CHARS = 256 * 1024
# python3-saml's ALLOWED_CLOCK_DRIFT (300 s): replay records outlive the assertion by as much.
CLOCK_DRIFT = timedelta(seconds=300)

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
# Only these transforms run before the signature is known to be good: anything else (XSLT,
# XPath, inclusive c14n with comments) is attacker-chosen work (python3-saml issue #447).
ALLOWED_TRANSFORMS = frozenset({ENVELOPED, EXC_C14N})
ALLOWED_C14N = frozenset({EXC_C14N})
TRANSIENT_NAMEID = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


# --------------------------------------------------------------------------- the response


@dataclass(frozen=True)
class SamlSignIn:
    identity: VerifiedIdentity
    next_path: str
    # Mark the AuthnRequest and the assertion id used; pass to complete_sign_in(claims=...).
    claims: tuple[SingleUse, ...]


class IdpInitiatedLogin(Exception):
    """An unsolicited response from an IdP allowed to start logins: restart SP-initiated."""


def _refused(
    code: str, message: str, status: int = 403, detail: dict[str, Any] | None = None
) -> SignInRefused:
    return SignInRefused(message, code=code, status=status, detail=detail)


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


def _library_refusal(err: Exception) -> SignInRefused:
    code = getattr(err, "code", None)
    if isinstance(err, OneLogin_Saml2_Error) and code == OneLogin_Saml2_Error.PRIVATE_KEY_NOT_FOUND:
        # We hold no decryption key: encryption is not authentication (SECURITY.md §1).
        return _refused(
            "saml.unsupported",
            "Encrypted assertions are not supported; the identity provider must send a signed, "
            "unencrypted assertion.",
            400,
        )
    if isinstance(err, OneLogin_Saml2_ValidationError) and code in _LIBRARY_REFUSALS:
        reason, message = _LIBRARY_REFUSALS[code]
        return _refused(reason, message)
    # The library's error code (not its message, which may quote document content).
    return _refused(
        "saml.structure",
        _STRUCTURE_MESSAGE,
        detail={"check": type(err).__name__, "library_code": code},
    )


def _decode(saml_response: str) -> bytes:
    if len(saml_response) > MAX_RESPONSE_CHARS:
        raise _refused("saml.too_large", "The sign-in response is too large.", 413)
    compact = "".join(saml_response.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _refused("saml.malformed", "The sign-in response is not valid base64.", 400) from None


def _check_structure(document: Any) -> None:
    """Checks that run before python3-saml touches a signature (hostile-input bounds)."""
    for signature in document.iter(f"{{{NS_DS}}}Signature"):
        parent = signature.getparent()
        references = signature.findall(f"{{{NS_DS}}}SignedInfo/{{{NS_DS}}}Reference")
        parent_id = parent.get("ID") if parent is not None else None
        if len(references) != 1 or not parent_id or references[0].get("URI") != f"#{parent_id}":
            raise _refused("saml.structure", _STRUCTURE_MESSAGE)
        for method in signature.iter(f"{{{NS_DS}}}CanonicalizationMethod"):
            if method.get("Algorithm") not in ALLOWED_C14N:
                raise _refused(
                    "saml.transform",
                    "The sign-in response uses a canonicalization method this service refuses.",
                    400,
                )
        for transform in signature.iter(f"{{{NS_DS}}}Transform"):
            if transform.get("Algorithm") not in ALLOWED_TRANSFORMS:
                raise _refused(
                    "saml.transform",
                    "The sign-in response uses a signature transform this service refuses.",
                    400,
                )
        if signature.find(f"{{{NS_DS}}}Object") is not None:
            raise _refused("saml.structure", _STRUCTURE_MESSAGE)


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
        raise _refused(
            "saml.encoding", "The sign-in response is not UTF-8 encoded, which is refused.", 400
        )


def _is_utf8(xml: bytes) -> bool:
    try:
        xml.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse(xml: bytes, sp_settings: OneLogin_Saml2_Settings, b64: str) -> OneLogin_Saml2_Response:
    _require_utf8(xml)
    if b"<!doctype" in xml.lower():
        raise _refused(
            "saml.dtd", "The sign-in response contains a DTD or entities, which are refused.", 400
        )
    # Comments split text nodes; the parser drops them, yet a legitimate IdP never sends one in
    # a response, so their presence is refused outright (CVE-2017-11427 class, VU#475445).
    if b"<!--" in xml:
        raise _refused(
            "saml.comment", "The sign-in response contains XML comments, which are refused.", 400
        )
    try:
        response = OneLogin_Saml2_Response(sp_settings, b64)
    except (DTDForbidden, EntitiesForbidden, NotSupportedError):
        raise _refused(
            "saml.dtd", "The sign-in response contains a DTD or entities, which are refused.", 400
        ) from None
    except etree.XMLSyntaxError:
        raise _refused(
            "saml.malformed", "The sign-in response is not well-formed XML.", 400
        ) from None
    except (OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError) as err:
        raise _library_refusal(err) from None
    except Exception:
        raise _refused("saml.malformed", "The sign-in response could not be read.", 400) from None
    root = response.document
    if root.tag != f"{{{C.NS_SAMLP}}}Response":
        raise _refused("saml.malformed", "The message is not a SAML response.", 400)
    _check_structure(root)
    return response


def _app_checks(
    idp: IdentityProvider, response: OneLogin_Saml2_Response, pending: SamlAuthnRequest
) -> datetime:
    """The checks python3-saml leaves to us; returns the assertion's latest NotOnOrAfter."""
    expected_acs = acs_url(idp)
    if response.document.get("Destination") != expected_acs:
        raise _refused(*_LIBRARY_REFUSALS[V.WRONG_DESTINATION])
    if response.get_in_response_to() != pending.request_id:
        raise _refused(*_LIBRARY_REFUSALS[V.WRONG_INRESPONSETO])

    restrictions = response._query_assertion("/saml:Conditions/saml:AudienceRestriction")
    audience = sp_entity_id(idp)
    if not restrictions or any(
        audience
        not in [OneLogin_Saml2_XML.element_text(a) for a in r.findall(f"{{{C.NS_SAML}}}Audience")]
        for r in restrictions
    ):
        raise _refused(*_LIBRARY_REFUSALS[V.WRONG_AUDIENCE])

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
            raise _refused(*_LIBRARY_REFUSALS[V.WRONG_SUBJECTCONFIRMATION])
        moment = _saml_time(not_on_or_after)
        latest = moment if latest is None else max(latest, moment)
    if latest is None:
        raise _refused(*_LIBRARY_REFUSALS[V.WRONG_SUBJECTCONFIRMATION])
    for conditions in response._query_assertion("/saml:Conditions[@NotOnOrAfter]"):
        latest = max(latest, _saml_time(conditions.get("NotOnOrAfter")))
    return latest


def _saml_time(value: str) -> datetime:
    return datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), tz=UTC)


def _first(attributes: dict[str, list[str]], name: str) -> str:
    values = attributes.get(name) or []
    return str(values[0]).strip() if values else ""


def _mfa_facts(
    idp: IdentityProvider,
    response: OneLogin_Saml2_Response,
    attributes: dict[str, list[str]],
    authn_contexts: list[str],
    now: datetime,
) -> mfa.MfaFacts:
    # Read from the signed assertion only (python3-saml's _query_assertion); a missing or
    # unknown class is "no MFA", never a refusal.
    statements = response._query_assertion("/saml:AuthnStatement")
    return mfa.saml_facts(
        idp,
        class_refs=authn_contexts,
        methods=[str(v) for v in attributes.get(mfa.methods_attribute(idp)) or []],
        instants=[str(s.get("AuthnInstant") or "") for s in statements],
        now=now,
    )


def _identity(
    idp: IdentityProvider, response: OneLogin_Saml2_Response, now: datetime
) -> VerifiedIdentity:
    cfg = SamlIdpConfig.of(idp)
    try:
        attributes: dict[str, list[str]] = response.get_attributes()
        # One read of the NameID for both its value and its format (python3-saml's
        # get_nameid and get_nameid_format each parse it again).
        name_id_data = response.get_nameid_data()
        name_id = name_id_data.get("Value") or ""
        name_id_format = name_id_data.get("Format") or ""
        authn_contexts = [str(c) for c in response.get_authn_contexts() or []]
    except (OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError) as err:
        raise _library_refusal(err) from None
    if cfg.subject_attribute:
        subject = _first(attributes, cfg.subject_attribute)
    else:
        if name_id_format == TRANSIENT_NAMEID:
            raise _refused(
                "saml.transient_subject",
                "The identity provider sent a one-time (transient) name for you; it must send a "
                "persistent one. Ask an administrator to fix the identity provider settings.",
            )
        subject = name_id.strip()
    if not subject:
        raise _refused(*_LIBRARY_REFUSALS[V.NO_NAMEID])
    email = _first(attributes, idp.email_attribute)
    if not email:
        raise _refused(
            "saml.no_email",
            f"The identity provider did not send your email address (attribute "
            f"“{idp.email_attribute}”).",
        )
    session_expiry = response.get_session_not_on_or_after()
    facts = _mfa_facts(idp, response, attributes, authn_contexts, now)
    return VerifiedIdentity(
        idp=idp,
        subject=subject,
        email=email,
        groups=groups_from(attributes.get(idp.groups_attribute)),
        manager=_first(attributes, idp.manager_attribute) if idp.manager_attribute else "",
        mfa=facts,
        auth_context={
            "protocol": "saml",
            "assertion_id": response.get_assertion_id(),
            "name_id": name_id,
            "name_id_format": name_id_format,
            "session_index": response.get_session_index(),
            "authn_contexts": authn_contexts,
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
    browser_secret: str | None,
    now: datetime,
    pending: SamlAuthnRequest | None = None,
) -> SamlSignIn:
    """Validate a POSTed response for ``idp`` (from ``identity.load_idp``). Writes nothing.

    ``browser_secret`` is the login-start cookie the browser sent (``saml.browser_cookie``);
    a response answers only the browser whose login it answers. ``pending``: the request
    ``pending_login`` found for ``relay_state`` (else it is looked up here).

    Returns the identity, the local path to go to, and ``claims``, which mark the AuthnRequest
    and the assertion id used (a replay is refused) and run in the sign-in transaction. Raises
    ``SignInRefused`` naming the fault, or ``IdpInitiatedLogin`` for an unsolicited response
    from an IdP configured to allow them (the caller restarts an SP-initiated login; nobody is
    signed in).
    """
    if not saml_response:
        raise _refused("saml.missing_response", "No sign-in response was received.", 400)
    xml = _decode(saml_response)
    if not relay_state:
        if SamlIdpConfig.of(idp).allow_idp_initiated:
            raise IdpInitiatedLogin
        raise _refused(
            "saml.unsolicited",
            "This sign-in was not started here (identity-provider-initiated sign-in is off).",
        )
    pending = saml_requests.pending_request(idp, relay_state, browser_secret, now, pending)
    sp_settings = saml_settings(idp)
    response = _parse(xml, sp_settings, saml_response)
    try:
        response.is_valid(request_data(idp), request_id=pending.request_id, raise_exceptions=True)
    except Exception as err:
        raise _library_refusal(err) from None
    not_on_or_after = _app_checks(idp, response, pending)
    identity = _identity(idp, response, now)
    claims = saml_requests.claims_for(
        idp, pending, str(identity.auth_context["assertion_id"]), not_on_or_after + CLOCK_DRIFT, now
    )
    return SamlSignIn(identity=identity, next_path=pending.next_path, claims=claims)
