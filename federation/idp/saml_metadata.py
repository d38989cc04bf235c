"""The SAML IdP registry: read IdP metadata, register an IdP, refresh it from its URL.

Metadata is parsed with python3-saml's hardened parser (no DTD, no entities, no network) and
checked strictly: one IdP entity, an HTTP-Redirect sign-in endpoint, at least one usable signing
certificate (all of them kept, so a certificate rollover works), and a valid signature when the
IdP is registered with a metadata signing certificate. A refresh that fails keeps the last good
configuration and is audited.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from cryptography import x509
from django.db import transaction
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from federation.audit.chain import record_event
from federation.idp.registry import IdpFields, RegistrationRefused, save_idp
from federation.idp.saml import BINDING_REDIRECT, MD, NS_DS
from federation.models import IdentityProvider, User

MAX_METADATA_BYTES = 2 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 10
DEPRECATED = frozenset(C.DEPRECATED_ALGORITHMS)


class MetadataRefused(RegistrationRefused):
    """IdP metadata that cannot be used; the message names the fault for an administrator."""

    code = "idp.metadata_refused"


@dataclass(frozen=True)
class IdpMetadata:
    entity_id: str
    sso_url: str
    slo_url: str
    signing_certs: tuple[str, ...]
    sha256: str


def _pem(cert_b64: str) -> str:
    return OneLogin_Saml2_Utils.format_cert(cert_b64)  # type: ignore[no-any-return]


def parse_idp_metadata(document: bytes, *, signing_cert: str = "", now: datetime) -> IdpMetadata:
    """Parse and check one IdP's metadata. Raises ``MetadataRefused`` naming the fault."""
    if not document.strip():
        raise MetadataRefused("the metadata document is empty")
    if len(document) > MAX_METADATA_BYTES:
        raise MetadataRefused("the metadata document is larger than 2 MiB")
    try:
        root = OneLogin_Saml2_XML.to_etree(document)
    except Exception as err:
        raise MetadataRefused(
            f"the metadata is not well-formed XML ({type(err).__name__})"
        ) from None
    if signing_cert:
        _check_metadata_signature(document, root, signing_cert)
    entities = (
        [root]
        if root.tag == f"{{{MD}}}EntityDescriptor"
        else root.findall(f".//{{{MD}}}EntityDescriptor")
        if root.tag == f"{{{MD}}}EntitiesDescriptor"
        else []
    )
    idps = [e for e in entities if e.find(f"{{{MD}}}IDPSSODescriptor") is not None]
    if not idps:
        raise MetadataRefused("the metadata describes no SAML identity provider (IDPSSODescriptor)")
    if len(idps) > 1:
        raise MetadataRefused("the metadata describes several identity providers; give one only")
    entity = idps[0]
    entity_id = (entity.get("entityID") or "").strip()
    if not entity_id:
        raise MetadataRefused("the EntityDescriptor has no entityID")
    _check_valid_until(root, now)
    _check_valid_until(entity, now)
    descriptor = entity.find(f"{{{MD}}}IDPSSODescriptor")
    assert descriptor is not None
    if C.NS_SAMLP not in (descriptor.get("protocolSupportEnumeration") or "").split():
        raise MetadataRefused("the identity provider does not announce SAML 2.0 support")
    sso_url = _endpoint(descriptor, "SingleSignOnService")
    if not sso_url:
        raise MetadataRefused("the identity provider has no HTTP-Redirect SingleSignOnService")
    certs: list[str] = []
    for key in descriptor.findall(f"{{{MD}}}KeyDescriptor"):
        if key.get("use") not in (None, "", "signing"):
            continue
        for node in key.iterfind(
            f"{{{NS_DS}}}KeyInfo/{{{NS_DS}}}X509Data/{{{NS_DS}}}X509Certificate"
        ):
            cert = "".join((OneLogin_Saml2_XML.element_text(node) or "").split())
            _check_cert(cert)
            if cert not in certs:
                certs.append(cert)
    if not certs:
        raise MetadataRefused("the identity provider lists no signing certificate")
    return IdpMetadata(
        entity_id=entity_id,
        sso_url=sso_url,
        slo_url=_endpoint(descriptor, "SingleLogoutService"),
        signing_certs=tuple(certs),
        sha256=hashlib.sha256(document).hexdigest(),
    )


def _endpoint(descriptor: Any, name: str) -> str:
    for node in descriptor.findall(f"{{{MD}}}{name}"):
        if node.get("Binding") == BINDING_REDIRECT and node.get("Location", "").startswith(
            ("https://", "http://")
        ):
            return str(node.get("Location"))
    return ""


def _check_valid_until(node: Any, now: datetime) -> None:
    value = node.get("validUntil")
    if not value:
        return
    try:
        until = datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), tz=UTC)
    except ValueError:
        raise MetadataRefused(f"validUntil is not a valid time: {value[:40]}") from None
    if until <= now:
        raise MetadataRefused(f"the metadata expired at {until.isoformat()} (validUntil)")


def _check_cert(cert: str) -> None:
    try:
        x509.load_der_x509_certificate(base64.b64decode(cert, validate=True))
    except Exception:
        raise MetadataRefused("a signing certificate in the metadata cannot be read") from None


def _check_metadata_signature(document: bytes, root: Any, signing_cert: str) -> None:
    signatures = root.findall(f"{{{NS_DS}}}Signature")
    if not signatures:
        raise MetadataRefused("the metadata is not signed, and this identity provider requires it")
    for method in root.iterfind(f"{{{NS_DS}}}Signature//*[@Algorithm]"):
        if method.get("Algorithm") in DEPRECATED:
            raise MetadataRefused("the metadata is signed with a deprecated algorithm (SHA-1)")
    try:
        OneLogin_Saml2_Utils.validate_metadata_sign(
            document, _pem(signing_cert), raise_exceptions=True
        )
    except Exception:
        raise MetadataRefused(
            "the metadata signature is not valid for the configured metadata signing certificate"
        ) from None


def fetch_metadata(url: str) -> bytes:
    """GET a metadata URL with a timeout and a size cap. Raises ``MetadataRefused``."""
    if not url.startswith(("https://", "http://")):
        raise MetadataRefused("the metadata URL must be http(s)")
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT_SECONDS, stream=True) as answer:
            if answer.status_code != 200:
                raise MetadataRefused(f"the metadata URL answered HTTP {answer.status_code}")
            body = answer.raw.read(MAX_METADATA_BYTES + 1, decode_content=True)
    except requests.RequestException as err:
        raise MetadataRefused(
            f"the metadata URL could not be fetched ({type(err).__name__})"
        ) from None
    if len(body) > MAX_METADATA_BYTES:
        raise MetadataRefused("the metadata document is larger than 2 MiB")
    return bytes(body)


def _metadata_config(meta: IdpMetadata, now: datetime) -> dict[str, Any]:
    return {
        "sso_url": meta.sso_url,
        "slo_url": meta.slo_url,
        "signing_certs": list(meta.signing_certs),
        "metadata_sha256": meta.sha256,
        "metadata_updated_at": now.isoformat(),
    }


def register_saml_idp(
    slug: str,
    *,
    document: bytes,
    metadata_url: str = "",
    metadata_signing_cert: str = "",
    groups_attribute: str = "groups",
    email_attribute: str = "email",
    manager_attribute: str = "",
    subject_attribute: str = "",
    display_name: str = "",
    want_messages_signed: bool = False,
    mfa_authn_contexts: tuple[str, ...] | None = None,
    request_authn_context: bool | None = None,
    actor: User | str,
    now: datetime,
) -> IdentityProvider:
    """Create or update a SAML IdP from its metadata, audited as ``actor``
    (``idp.saml_registered``). Raises ``MetadataRefused`` or ``RegistrationRefused``.

    ``mfa_authn_contexts``: the classes that count as MFA (None keeps what is stored, () the
    default of federation/idp/mfa.py); ``request_authn_context`` False stops a step-up from
    naming them in a RequestedAuthnContext (Entra ID refuses classes it does not issue)."""
    meta = parse_idp_metadata(document, signing_cert=metadata_signing_cert, now=now)
    settings = {
        **_metadata_config(meta, now),
        "metadata_url": metadata_url,
        "metadata_signing_cert": metadata_signing_cert,
        "subject_attribute": subject_attribute,
        "want_messages_signed": want_messages_signed,
        **(
            {"request_authn_context": request_authn_context}
            if request_authn_context is not None
            else {}
        ),
    }
    idp, _ = save_idp(
        slug,
        IdentityProvider.Protocol.SAML,
        IdpFields(
            entity_id=meta.entity_id,
            # Keys other registrations or operators added stay (the demo IdP's, for one).
            config=lambda stored: {**stored, **settings},
            groups_attribute=groups_attribute,
            email_attribute=email_attribute,
            manager_attribute=manager_attribute,
            display_name=display_name,
            mfa_authn_contexts=mfa_authn_contexts,
        ),
        event_type=lambda _created: "idp.saml_registered",
        audit_data={
            "entity_id": meta.entity_id,
            "sso_url": meta.sso_url,
            "signing_cert_sha256": [_fingerprint(c) for c in meta.signing_certs],
            "metadata_url": metadata_url,
            "metadata_sha256": meta.sha256,
            "mfa_authn_contexts": list(mfa_authn_contexts or ()),
        },
        actor=actor,
        now=now,
    )
    return idp


def _fingerprint(cert_b64: str) -> str:
    return hashlib.sha256(base64.b64decode(cert_b64)).hexdigest()


def refresh_idp_metadata(idp: IdentityProvider, *, now: datetime) -> bool:
    """Fetch the IdP's metadata URL again. Returns True when the configuration changed.

    A failed fetch, an unusable document or a changed entity id keeps the last good
    configuration and is audited as ``idp.saml_metadata_refresh_failed``.
    """
    url = str((idp.config or {}).get("metadata_url", ""))
    if not url:
        return False
    signing_cert = str((idp.config or {}).get("metadata_signing_cert", ""))
    try:
        meta = parse_idp_metadata(fetch_metadata(url), signing_cert=signing_cert, now=now)
        if meta.entity_id != idp.entity_id:
            raise MetadataRefused(
                f"the metadata now names another entity id ({meta.entity_id[:200]})"
            )
    except MetadataRefused as refusal:
        record_event(
            "idp.saml_metadata_refresh_failed",
            actor="system",
            target=f"idp:{idp.slug}",
            now=now,
            data={"idp": idp.slug, "metadata_url": url, "problem": str(refusal)},
        )
        return False
    with transaction.atomic(durable=True):
        locked = IdentityProvider.objects.select_for_update().get(pk=idp.pk)
        if (locked.config or {}).get("metadata_sha256") == meta.sha256:
            return False
        before = list((locked.config or {}).get("signing_certs", []))
        locked.entity_id = meta.entity_id
        locked.config = {**(locked.config or {}), **_metadata_config(meta, now)}
        locked.save(update_fields=["entity_id", "config"])
        record_event(
            "idp.saml_metadata_refreshed",
            actor="system",
            target=f"idp:{idp.slug}",
            now=now,
            data={
                "idp": idp.slug,
                "metadata_sha256": meta.sha256,
                "signing_cert_sha256_before": [_fingerprint(c) for c in before],
                "signing_cert_sha256_after": [_fingerprint(c) for c in meta.signing_certs],
                "sso_url": meta.sso_url,
            },
        )
    idp.refresh_from_db()
    return True


def refresh_all_metadata(*, now: datetime) -> int:
    """Refresh every enabled SAML IdP that has a metadata URL; returns how many changed."""
    changed = 0
    for idp in IdentityProvider.objects.filter(
        protocol=IdentityProvider.Protocol.SAML, enabled=True
    ):
        if (idp.config or {}).get("metadata_url") and refresh_idp_metadata(idp, now=now):
            changed += 1
    return changed
