"""The SAML IdP registry: add_saml_idp, metadata refresh, SP metadata, certificate rollover."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from lxml import etree

from federation.audit.chain import cli_actor
from federation.idp.saml_metadata import refresh_all_metadata
from federation.models import AuditEvent, IdentityProvider, User
from federation.tasks import refresh_saml_metadata
from tests.saml_idp import NS, PysamlIdp, SamlFlow, cert_body, make_key_pair

pytestmark = pytest.mark.django_db


class MetadataServer:
    """A loopback HTTP server whose answer the test changes (the IdP's metadata URL)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(server.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metadata.xml"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def metadata_server() -> Iterator[MetadataServer]:
    server = MetadataServer()
    yield server
    server.close()


def _signer(tmp_path: Path, name: str = "okta") -> PysamlIdp:
    key_pem, cert_pem = make_key_pair(name)
    return PysamlIdp(
        entity_id=f"https://{name}.idp.test/saml",
        workdir=tmp_path / name,
        key_pem=key_pem,
        cert_pem=cert_pem,
        sso_url=f"https://{name}.idp.test/sso",
    )


def _with_second_cert(document: bytes, cert_pem: bytes) -> bytes:
    root = etree.fromstring(document)
    descriptor = root.find("md:IDPSSODescriptor", NS)
    assert descriptor is not None
    key = etree.SubElement(descriptor, f"{{{NS['md']}}}KeyDescriptor", use="signing")
    info = etree.SubElement(key, f"{{{NS['ds']}}}KeyInfo")
    data = etree.SubElement(info, f"{{{NS['ds']}}}X509Data")
    etree.SubElement(data, f"{{{NS['ds']}}}X509Certificate").text = cert_body(cert_pem)
    descriptor.insert(0, key)
    return etree.tostring(root)


def test_add_saml_idp_from_a_file_stores_entity_endpoint_and_certificates(
    tmp_path: Path,
) -> None:
    signer = _signer(tmp_path)
    path = tmp_path / "okta.xml"
    path.write_bytes(signer.metadata_xml())
    out = StringIO()
    call_command(
        "add_saml_idp",
        "--slug=okta",
        f"--metadata-file={path}",
        "--groups-attribute=memberOf",
        "--manager-attribute=manager",
        stdout=out,
    )
    idp = IdentityProvider.objects.get(slug="okta")
    assert idp.protocol == "saml"
    assert idp.entity_id == "https://okta.idp.test/saml"
    assert idp.config["sso_url"] == "https://okta.idp.test/sso"
    assert idp.config["signing_certs"] == [signer.cert_b64]
    assert (idp.groups_attribute, idp.manager_attribute) == ("memberOf", "manager")
    assert "http://127.0.0.1:8000/saml/okta/acs/" in out.getvalue()
    assert AuditEvent.objects.filter(event_type="idp.saml_registered").count() == 1


def test_add_saml_idp_audits_the_operating_system_user(tmp_path: Path) -> None:
    path = tmp_path / "okta.xml"
    path.write_bytes(_signer(tmp_path).metadata_xml())
    call_command("add_saml_idp", "--slug=okta", f"--metadata-file={path}", stdout=StringIO())
    event = AuditEvent.objects.get(event_type="idp.saml_registered")
    assert event.actor == cli_actor()


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        (b"<md:EntityDescriptor", "not well-formed XML"),
        (b"", "empty"),
        (
            b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x">'
            b"<md:SPSSODescriptor protocolSupportEnumeration="
            b'"urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>',
            "no SAML identity provider",
        ),
    ],
)
def test_bad_metadata_is_refused_with_the_fault_named(
    tmp_path: Path, document: bytes, fault: str
) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(document)
    with pytest.raises(CommandError, match=fault):
        call_command("add_saml_idp", "--slug=bad", f"--metadata-file={path}")
    assert not IdentityProvider.objects.exists()


def test_metadata_without_a_signing_certificate_is_refused(tmp_path: Path) -> None:
    root = etree.fromstring(_signer(tmp_path).metadata_xml())
    for key in root.iter(f"{{{NS['md']}}}KeyDescriptor"):
        key.getparent().remove(key)  # type: ignore[union-attr]
    path = tmp_path / "nocert.xml"
    path.write_bytes(etree.tostring(root))
    with pytest.raises(CommandError, match="no signing certificate"):
        call_command("add_saml_idp", "--slug=nocert", f"--metadata-file={path}")


def test_unsigned_metadata_is_refused_when_a_signature_is_required(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    path = tmp_path / "okta.xml"
    path.write_bytes(signer.metadata_xml())
    cert = tmp_path / "md-signer.pem"
    cert.write_bytes(make_key_pair("metadata-signer")[1])
    with pytest.raises(CommandError, match="not signed"):
        call_command(
            "add_saml_idp",
            "--slug=okta",
            f"--metadata-file={path}",
            f"--metadata-signing-cert={cert}",
        )


def test_both_certificates_of_a_rollover_are_trusted(saml_flow: SamlFlow, tmp_path: Path) -> None:
    new_key, new_cert = make_key_pair("corp-next")
    document = _with_second_cert(saml_flow.signer.metadata_xml(), new_cert)
    path = tmp_path / "rollover.xml"
    path.write_bytes(document)
    call_command(
        "add_saml_idp",
        "--slug=corp",
        f"--metadata-file={path}",
        "--email-attribute=urn:oid:1.2.840.113549.1.9.1.1",
        stdout=StringIO(),
    )
    saml_flow.idp.refresh_from_db()
    assert len(saml_flow.idp.config["signing_certs"]) == 2
    saml_flow.signer.key_pem, saml_flow.signer.cert_pem = new_key, new_cert
    saml_flow.signer.trust_sp(saml_flow.signer.sp_metadata[0])
    answer = saml_flow.sign_in()
    assert answer.status_code == 302, answer.content.decode()[-400:]
    assert User.objects.count() == 1


def test_metadata_url_is_refreshed_and_a_bad_refresh_keeps_the_last_good(
    tmp_path: Path, metadata_server: MetadataServer
) -> None:
    signer = _signer(tmp_path)
    metadata_server.body = signer.metadata_xml()
    call_command(
        "add_saml_idp", "--slug=okta", f"--metadata-url={metadata_server.url}", stdout=StringIO()
    )
    idp = IdentityProvider.objects.get(slug="okta")
    assert idp.config["metadata_url"] == metadata_server.url

    # Rollover: the IdP publishes a second certificate.
    metadata_server.body = _with_second_cert(signer.metadata_xml(), make_key_pair("next")[1])
    assert refresh_saml_metadata.delay().get() == 1
    idp.refresh_from_db()
    assert len(idp.config["signing_certs"]) == 2
    assert AuditEvent.objects.filter(event_type="idp.saml_metadata_refreshed").count() == 1
    good = dict(idp.config)

    for status, body, problem in [
        (500, b"oops", "HTTP 500"),
        (200, b"<not xml", "not well-formed"),
        (200, _signer(tmp_path, "impostor").metadata_xml(), "another entity id"),
    ]:
        metadata_server.status, metadata_server.body = status, body
        assert refresh_all_metadata(now=timezone.now()) == 0
        idp.refresh_from_db()
        assert idp.config == good
        failed = AuditEvent.objects.filter(event_type="idp.saml_metadata_refresh_failed").first()
        assert failed is not None and problem in failed.data["problem"]


def test_sp_metadata_command_and_endpoint_name_the_acs_url(saml_flow: SamlFlow) -> None:
    out = StringIO()
    call_command("saml_sp_metadata", "--idp=corp", stdout=out)
    assert 'Location="http://127.0.0.1:8000/saml/corp/acs/"' in out.getvalue()
    assert 'entityID="http://127.0.0.1:8000/saml/corp/metadata/"' in out.getvalue()
    answer = Client().get("/saml/corp/metadata/")
    assert answer.status_code == 200

    # The same document, but for validUntil, which counts from the moment each one is made.
    def timeless(xml: str) -> str:
        return re.sub(r'validUntil="[^"]*"', 'validUntil=""', xml)

    assert 'validUntil="' in out.getvalue()
    assert timeless(answer.content.decode()) == timeless(out.getvalue().rstrip("\n"))


def test_unknown_disabled_or_oidc_idp_is_an_audited_404_on_every_saml_endpoint(
    client: Client,
) -> None:
    IdentityProvider.objects.create(slug="off", protocol="saml", entity_id="x", enabled=False)
    IdentityProvider.objects.create(slug="oidc", protocol="oidc", entity_id="https://o.test")
    for slug in ("nope", "off", "oidc"):
        for answer in (
            client.get(f"/saml/{slug}/login/"),
            client.post(f"/saml/{slug}/acs/", {"SAMLResponse": "x", "RelayState": "y"}),
            client.get(f"/saml/{slug}/metadata/"),
        ):
            assert answer.status_code == 404
            assert b"Sign-in refused" in answer.content
            event = AuditEvent.objects.filter(event_type="signin.refused").first()
            assert event is not None
            assert (event.data["reason"], event.data["idp"]) == ("saml.unknown_idp", slug)
    assert AuditEvent.objects.filter(event_type="signin.refused").count() == 9


def test_a_half_configured_idp_gets_a_refusal_page_not_a_server_error(client: Client) -> None:
    IdentityProvider.objects.create(
        slug="half", protocol="saml", entity_id="https://half.test/", config={"sso_url": "x"}
    )
    answer = client.get("/saml/half/login/")
    assert answer.status_code == 400
    assert "no signing certificate" in answer.content.decode()
