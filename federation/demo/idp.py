"""The development IdP of the demo (SPEC §6): signs real SAML responses for demo users.

It exists only in demo mode (``settings.DEMO_MODE``): the URLs are mounted only then, and every
entry point here refuses otherwise. It signs with the Python ``xmlsec`` binding the service
already uses, with a key generated under ``var/demo-idp/``, and its responses go through the
same ACS and the same checks as any IdP's.

Coupling with ``seed_demo``: that command creates the IdentityProvider ``demo`` (entity id
``urn:fedaccess:demo-idp``) and demo users bound to it. ``configure_demo_idp()`` (run by
``manage.py demo_idp``, which ``make demo`` calls after ``seed_demo``) only fills that row's
SAML settings (sign-in URL and this IdP's certificate), creating the row if it is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.exceptions import PermissionDenied
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from xmlsec import constants

from federation.idp.registry import IdpFields, save_idp
from federation.idp.saml import acs_url, sp_entity_id
from federation.models import IdentityProvider, User
from federation.refusals import Refused

DEMO_IDP_SLUG = "demo"
DEMO_IDP_ENTITY_ID = "urn:fedaccess:demo-idp"
# As seed_demo names it, so whichever runs first the row reads the same.
DEMO_IDP_DISPLAY_NAME = "Demo IdP (development only)"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
LIFETIME = dt.timedelta(minutes=5)


def require_demo_mode() -> None:
    if not settings.DEMO_MODE:
        raise PermissionDenied("the development IdP exists only in demo mode (DEMO_MODE=1)")


def key_dir() -> Path:
    configured = getattr(settings, "DEMO_IDP_KEY_DIR", None)
    return Path(configured) if configured else Path(settings.BASE_DIR) / "var" / "demo-idp"


def load_or_create_keys(*, now: dt.datetime) -> tuple[bytes, bytes]:
    """The demo IdP's RSA key and self-signed certificate (PEM), generated on first use."""
    require_demo_mode()
    directory = key_dir()
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    if key_path.exists() and cert_path.exists():
        return key_path.read_bytes(), cert_path.read_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedaccess demo IdP")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(cert_pem)
    return key_pem, cert_pem


def sso_url() -> str:
    return f"{settings.BASE_URL}/demo-idp/sso/"


def configure_demo_idp(*, actor: str, now: dt.datetime) -> IdentityProvider:
    """Point the ``demo`` IdentityProvider at this IdP (its sign-in URL and certificate)."""
    require_demo_mode()
    _, cert_pem = load_or_create_keys(now=now)
    signing_cert = OneLogin_Saml2_Utils.format_cert(cert_pem.decode(), heads=False)
    idp, _ = save_idp(
        DEMO_IDP_SLUG,
        IdentityProvider.Protocol.SAML,
        IdpFields(
            entity_id=DEMO_IDP_ENTITY_ID,
            config=lambda stored: {**stored, "sso_url": sso_url(), "signing_certs": [signing_cert]},
            display_name=DEMO_IDP_DISPLAY_NAME,
        ),
        event_type=lambda _created: "idp.demo_configured",
        audit_data={"sso_url": sso_url()},
        actor=actor,
        now=now,
    )
    return idp


class DemoRequestRefused(Refused):
    """The AuthnRequest the demo IdP was given is not one it will answer."""

    code = "demo_idp.request_refused"
    status = 400
    title = "Demo sign-in refused"


@dataclass(frozen=True)
class DemoAuthnRequest:
    request_id: str
    acs_url: str
    issuer: str
    # A step-up: the demo IdP then "asks for a second factor" and asserts the MFA class.
    force_authn: bool = False


SINGLE_FACTOR_CLASS = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
# What the demo IdP asserts after a step-up (ForceAuthn): AD FS's MFA class, a default MFA class.
MFA_CLASS = "http://schemas.microsoft.com/claims/multipleauthn"


def demo_idp() -> IdentityProvider:
    require_demo_mode()
    idp = IdentityProvider.objects.filter(slug=DEMO_IDP_SLUG).first()
    if idp is None:
        raise DemoRequestRefused("no 'demo' identity provider: run manage.py demo_idp")
    return idp


def read_authn_request(saml_request: str) -> DemoAuthnRequest:
    """Decode an HTTP-Redirect AuthnRequest; it must come from this service's SP for ``demo``."""
    require_demo_mode()
    try:
        xml = zlib.decompress(base64.b64decode(saml_request, validate=True), -15)
        root = OneLogin_Saml2_XML.to_etree(xml)
    except Exception:
        raise DemoRequestRefused("the sign-in request could not be read") from None
    issuer = root.find(f"{{{SAML}}}Issuer")
    request = DemoAuthnRequest(
        request_id=root.get("ID") or "",
        acs_url=root.get("AssertionConsumerServiceURL") or "",
        issuer=(issuer.text or "").strip() if issuer is not None else "",
        force_authn=(root.get("ForceAuthn") or "").lower() in ("true", "1"),
    )
    idp = demo_idp()
    if (
        root.tag != f"{{{SAMLP}}}AuthnRequest"
        or not request.request_id
        or request.acs_url != acs_url(idp)
        or request.issuer != sp_entity_id(idp)
    ):
        raise DemoRequestRefused("the sign-in request is not from this service's demo sign-in")
    return request


def list_demo_users() -> list[User]:
    return list(User.objects.filter(idp=demo_idp()).order_by("email"))


def sign_response(user: User, request: DemoAuthnRequest, *, now: dt.datetime) -> str:
    """A signed SAML response (base64) asserting ``user`` to our ACS, answering ``request``."""
    require_demo_mode()
    idp = demo_idp()
    if user.idp_id != idp.pk or not user.subject:
        raise DemoRequestRefused("only demo users can sign in through the demo IdP")
    now = now.astimezone(dt.UTC).replace(microsecond=0)

    def stamp(moment: dt.datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    acs = acs_url(idp)
    response_id, assertion_id = f"_r{secrets.token_hex(16)}", f"_a{secrets.token_hex(16)}"
    nsmap = {"samlp": SAMLP, "saml": SAML}
    response = etree.Element(
        f"{{{SAMLP}}}Response",
        nsmap=nsmap,
        ID=response_id,
        Version="2.0",
        IssueInstant=stamp(now),
        Destination=acs,
        InResponseTo=request.request_id,
    )
    etree.SubElement(response, f"{{{SAML}}}Issuer").text = idp.entity_id
    status = etree.SubElement(response, f"{{{SAMLP}}}Status")
    etree.SubElement(
        status, f"{{{SAMLP}}}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success"
    )
    assertion = etree.SubElement(
        response, f"{{{SAML}}}Assertion", ID=assertion_id, Version="2.0", IssueInstant=stamp(now)
    )
    etree.SubElement(assertion, f"{{{SAML}}}Issuer").text = idp.entity_id
    subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
    etree.SubElement(subject, f"{{{SAML}}}NameID", Format=PERSISTENT).text = user.subject
    confirmation = etree.SubElement(
        subject, f"{{{SAML}}}SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"
    )
    etree.SubElement(
        confirmation,
        f"{{{SAML}}}SubjectConfirmationData",
        NotOnOrAfter=stamp(now + LIFETIME),
        Recipient=acs,
        InResponseTo=request.request_id,
    )
    conditions = etree.SubElement(
        assertion, f"{{{SAML}}}Conditions", NotBefore=stamp(now), NotOnOrAfter=stamp(now + LIFETIME)
    )
    restriction = etree.SubElement(conditions, f"{{{SAML}}}AudienceRestriction")
    etree.SubElement(restriction, f"{{{SAML}}}Audience").text = request.issuer
    authn = etree.SubElement(
        assertion,
        f"{{{SAML}}}AuthnStatement",
        AuthnInstant=stamp(now),
        SessionIndex=f"_s{secrets.token_hex(8)}",
    )
    context = etree.SubElement(authn, f"{{{SAML}}}AuthnContext")
    etree.SubElement(context, f"{{{SAML}}}AuthnContextClassRef").text = (
        MFA_CLASS if request.force_authn else SINGLE_FACTOR_CLASS
    )
    attributes = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
    values: dict[str, list[str]] = {
        idp.email_attribute: [user.email],
        idp.groups_attribute: list(user.directory_groups),
    }
    if idp.manager_attribute and user.manager:
        values[idp.manager_attribute] = [user.manager]
    for name, items in values.items():
        attribute = etree.SubElement(
            attributes,
            f"{{{SAML}}}Attribute",
            Name=name,
            NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
        )
        for item in items:
            etree.SubElement(attribute, f"{{{SAML}}}AttributeValue").text = item
    _sign(assertion, now=now)
    return base64.b64encode(etree.tostring(response)).decode()


def _sign(element: etree._Element, *, now: dt.datetime) -> None:
    key_pem, cert_pem = load_or_create_keys(now=now)
    signature = xmlsec.template.create(
        element, constants.TransformExclC14N, constants.TransformRsaSha256, ns="ds"
    )
    issuer = element.find(f"{{{SAML}}}Issuer")
    assert issuer is not None
    issuer.addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, constants.TransformSha256, uri=f"#{element.get('ID')}"
    )
    xmlsec.template.add_transform(reference, constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, constants.TransformExclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    key = xmlsec.Key.from_memory(key_pem, constants.KeyDataFormatPem, None)
    key.load_cert_from_memory(cert_pem, constants.KeyDataFormatPem)
    xmlsec.tree.add_ids(element, ["ID"])
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(signature)
