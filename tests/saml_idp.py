"""A real, independent SAML IdP for tests: pysaml2 with throwaway keys made at test time.

pysaml2 reads our AuthnRequest, builds the response, and signs it with Debian's ``xmlsec1``
program, so the product's verifier (python3-saml + the xmlsec binding) never checks its own
signatures. ``edit`` lets a test change the XML before signing (expired, wrong audience...) and
``tamper`` after signing (wrapping, comment injection...).
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, xmldsig
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.sigver import pre_signature_part

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
# pysaml2 releases "email" under its URI name, as many IdPs do.
EMAIL_OID = "urn:oid:1.2.840.113549.1.9.1.1"
SHA256 = (xmldsig.SIG_RSA_SHA256, xmldsig.DIGEST_SHA256)
SHA1 = (xmldsig.SIG_RSA_SHA1, xmldsig.DIGEST_SHA1)

Edit = Callable[[etree._Element], None]


def make_key_pair(common_name: str) -> tuple[bytes, bytes]:
    """A throwaway RSA key and self-signed certificate (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def cert_body(cert_pem: bytes) -> str:
    return str(OneLogin_Saml2_Utils.format_cert(cert_pem.decode(), heads=False))


@dataclass(frozen=True)
class AuthnRequestSeen:
    """What the IdP read from our redirect."""

    request_id: str
    acs_url: str
    sp_entity_id: str
    relay_state: str
    force_authn: bool = False
    requested_contexts: tuple[str, ...] = ()  # RequestedAuthnContext's AuthnContextClassRefs


@dataclass
class PysamlIdp:
    entity_id: str
    workdir: Path
    key_pem: bytes
    cert_pem: bytes
    sso_url: str = ""
    sp_metadata: list[str] = field(default_factory=list)
    _server: Server | None = None

    @property
    def cert_b64(self) -> str:
        return cert_body(self.cert_pem)

    def _config(self) -> IdPConfig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "idp.key"
        cert_file = self.workdir / "idp.crt"
        key_file.write_bytes(self.key_pem)
        cert_file.write_bytes(self.cert_pem)
        xmlsec = shutil.which("xmlsec1")
        if xmlsec is None:
            raise RuntimeError("xmlsec1 is missing: run scripts/ensure-system-packages")
        conf: dict[str, Any] = {
            "entityid": self.entity_id,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (self.sso_url, BINDING_HTTP_REDIRECT),
                            (self.sso_url, BINDING_HTTP_POST),
                        ],
                        "single_logout_service": [
                            (self.sso_url.replace("/sso", "/slo"), BINDING_HTTP_REDIRECT)
                        ],
                    },
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "want_authn_requests_signed": False,
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "name_form": NAME_FORMAT_URI,
                            "attribute_restrictions": None,
                        }
                    },
                }
            },
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            "xmlsec_binary": xmlsec,
            "crypto_backend": "xmlsec1",
            "delete_tmpfiles": True,
            "metadata": {"inline": list(self.sp_metadata)} if self.sp_metadata else {},
        }
        config = IdPConfig()
        config.load(conf)
        return config

    def metadata_xml(self) -> bytes:
        """This IdP's metadata, written by pysaml2."""
        document = create_metadata_string(None, config=self._config(), valid=48)
        return document if isinstance(document, bytes) else str(document).encode()

    def trust_sp(self, sp_metadata_xml: str) -> None:
        self.sp_metadata.append(sp_metadata_xml)
        self._server = None

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = Server(config=self._config())
        return self._server

    def read_redirect(self, location: str) -> AuthnRequestSeen:
        """Parse the AuthnRequest our /saml/<idp>/login/ redirected the browser with."""
        query = parse_qs(urlsplit(location).query)
        parsed = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        message = parsed.message
        requested = message.requested_authn_context
        return AuthnRequestSeen(
            request_id=message.id,
            acs_url=message.assertion_consumer_service_url,
            sp_entity_id=message.issuer.text,
            relay_state=query["RelayState"][0],
            force_authn=str(message.force_authn).lower() == "true",
            requested_contexts=tuple(
                ref.text for ref in (requested.authn_context_class_ref if requested else [])
            ),
        )

    def response_xml(
        self,
        seen: AuthnRequestSeen,
        *,
        subject: str = "00u-alice",
        attributes: dict[str, list[str]] | None = None,
        edit: Edit | None = None,
        algorithms: tuple[str, str] = SHA256,
        sign_assertion: bool = True,
        sign_response: bool = False,
        authn: dict[str, Any] | None = None,
    ) -> bytes:
        """A response to ``seen``: built by pysaml2, optionally edited, then signed by xmlsec1.

        ``authn`` is pysaml2's AuthnStatement input: ``class_ref`` (the AuthnContextClassRef)
        and ``authn_instant`` (seconds since the epoch); by default a password sign-in now."""
        identity = (
            attributes
            if attributes is not None
            else {
                "email": ["alice@corp.example"],
                "groups": ["aws-pb-cloud-eng", "everyone"],
                "manager": ["bob@corp.example"],
            }
        )
        unsigned = self.server.create_authn_response(
            identity=identity,
            in_response_to=seen.request_id,
            destination=seen.acs_url,
            sp_entity_id=seen.sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=subject),
            authn=authn
            if authn is not None
            else {"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_assertion=False,
            sign_response=False,
        )
        root = etree.fromstring(str(unsigned).encode())
        if edit is not None:
            edit(root)
        sign_alg, digest_alg = algorithms
        if sign_assertion:
            for assertion in root.findall("saml:Assertion", NS):
                self._add_template(assertion, sign_alg, digest_alg)
        if sign_response:
            self._add_template(root, sign_alg, digest_alg)
        xml = etree.tostring(root).decode()
        if sign_assertion:
            for assertion in root.findall("saml:Assertion", NS):
                xml = self.server.sec.sign_statement(xml, ASSERTION, node_id=assertion.get("ID"))
        if sign_response:
            xml = self.server.sec.sign_statement(xml, RESPONSE, node_id=root.get("ID"))
        return xml.encode() if isinstance(xml, str) else bytes(xml)

    def _add_template(self, element: etree._Element, sign_alg: str, digest_alg: str) -> None:
        template = pre_signature_part(
            ident=element.get("ID"),
            public_key=self.cert_b64,
            sign_alg=sign_alg,
            digest_alg=digest_alg,
        )
        signature = etree.fromstring(template.to_string())
        issuer = element.find("saml:Issuer", NS)
        position = list(element).index(issuer) + 1 if issuer is not None else 0
        element.insert(position, signature)


def b64(xml: bytes | str) -> str:
    return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()


def inflate_request(saml_request: str) -> bytes:
    return zlib.decompress(base64.b64decode(saml_request), -15)


# --------------------------------------------------------------------------- pytest fixtures

import pytest  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from federation.idp import saml_metadata  # noqa: E402
from federation.idp.saml import sp_metadata  # noqa: E402
from federation.models import IdentityProvider  # noqa: E402

_KEYS: dict[str, tuple[bytes, bytes]] = {}


def cached_key_pair(name: str) -> tuple[bytes, bytes]:
    """Keys are made once per test session (RSA generation is slow), never stored on disk."""
    if name not in _KEYS:
        _KEYS[name] = make_key_pair(name)
    return _KEYS[name]


@dataclass
class SamlFlow:
    """One IdP registered in the product from pysaml2's metadata, plus browser-side helpers."""

    idp: IdentityProvider
    signer: PysamlIdp
    client: Client

    def start(self, next_path: str | None = None, client: Client | None = None) -> AuthnRequestSeen:
        url = f"/saml/{self.idp.slug}/login/"
        answer = (client or self.client).get(url, {"next": next_path} if next_path else {})
        assert answer.status_code == 302, answer.content
        return self.signer.read_redirect(answer["Location"])

    def post(
        self,
        xml: bytes | str | None,
        relay_state: str | None,
        *,
        slug: str | None = None,
        client: Client | None = None,
        raw: str | None = None,
    ) -> HttpResponse:
        data: dict[str, str] = {}
        if xml is not None or raw is not None:
            data["SAMLResponse"] = raw if raw is not None else b64(xml or b"")
        if relay_state is not None:
            data["RelayState"] = relay_state
        return (client or self.client).post(f"/saml/{slug or self.idp.slug}/acs/", data)

    def sign_in(self, **kwargs: Any) -> HttpResponse:
        seen = self.start()
        return self.post(self.signer.response_xml(seen, **kwargs), seen.relay_state)


def make_flow(slug: str, tmp_path: Path, client: Client, *, entity_id: str = "") -> SamlFlow:
    key_pem, cert_pem = cached_key_pair(slug)
    signer = PysamlIdp(
        entity_id=entity_id or f"https://{slug}.idp.test/saml",
        workdir=tmp_path / f"idp-{slug}",
        key_pem=key_pem,
        cert_pem=cert_pem,
        sso_url=f"https://{slug}.idp.test/sso",
    )
    idp = register_signer(slug, signer, manager_attribute="manager")
    return SamlFlow(idp=idp, signer=signer, client=client)


def register_signer(slug: str, signer: PysamlIdp, **options: Any) -> IdentityProvider:
    """The one way tests register a SAML IdP: the product's registry reads the pysaml2 IdP's
    metadata, and the IdP learns our SP metadata in return."""
    idp = saml_metadata.register_saml_idp(
        slug,
        document=signer.metadata_xml(),
        email_attribute=EMAIL_OID,
        actor="test-setup",
        now=timezone.now(),
        **options,
    )
    signer.trust_sp(sp_metadata(idp))
    return idp


@pytest.fixture
def saml_flow(db: None, tmp_path: Path, client: Client) -> SamlFlow:
    return make_flow("corp", tmp_path, client)
