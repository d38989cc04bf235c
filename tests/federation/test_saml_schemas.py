"""The compiled-schema cache (federation/idp/saml_schemas.py) keeps python3-saml's contract: a
response whose signature is good but whose XML breaks the SAML schema is refused either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from lxml import etree
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from federation.idp import saml_schemas
from federation.models import AuditEvent, User
from tests.saml_idp import SamlFlow

pytestmark = pytest.mark.django_db

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"


@pytest.fixture(params=["cache installed", "library's own validate_xml"])
def schema_validation(request: pytest.FixtureRequest) -> Iterator[str]:
    was_installed = saml_schemas.installed()
    if request.param == "cache installed":
        assert saml_schemas.install()
        assert saml_schemas.installed()
    else:
        saml_schemas.uninstall()
        assert not saml_schemas.installed()
    yield str(request.param)
    if was_installed:
        saml_schemas.install()
    else:
        saml_schemas.uninstall()


def _schema_invalid(root: etree._Element) -> None:
    # An element the protocol schema does not allow in a Response, added before signing.
    etree.SubElement(root, f"{SAMLP}NotInTheSchema").text = "x"


def test_signed_but_schema_invalid_response_is_refused(
    saml_flow: SamlFlow, schema_validation: str
) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen, edit=_schema_invalid, sign_response=True)
    # The harness is honest: both signatures verify against the IdP's certificate.
    cert = OneLogin_Saml2_Utils.format_cert(saml_flow.signer.cert_b64)
    for signed in (
        OneLogin_Saml2_Utils.RESPONSE_SIGNATURE_XPATH,
        OneLogin_Saml2_Utils.ASSERTION_SIGNATURE_XPATH,
    ):
        assert OneLogin_Saml2_Utils.validate_sign(xml, cert, xpath=signed, raise_exceptions=True)

    answer = saml_flow.post(xml, seen.relay_state)

    assert answer.status_code == 403, answer.content[-400:]
    assert User.objects.count() == 0
    event = AuditEvent.objects.get(event_type="signin.refused")
    assert event.data["reason"] == "saml.structure"
    assert event.data["library_code"] == OneLogin_Saml2_ValidationError.INVALID_XML_FORMAT


def test_the_same_response_without_the_stray_element_signs_in(
    saml_flow: SamlFlow, schema_validation: str
) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen, sign_response=True)
    assert saml_flow.post(xml, seen.relay_state).status_code == 302


def test_cache_refuses_to_install_on_an_unknown_library_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    was_installed = saml_schemas.installed()
    saml_schemas.uninstall()
    try:
        with caplog.at_level(logging.WARNING, logger="federation.idp.saml_schemas"):
            assert not saml_schemas.install(found="99.0.0")
        assert not saml_schemas.installed()
        assert "written for python3-saml 1.16.0, found 99.0.0" in caplog.text
    finally:
        if was_installed:
            saml_schemas.install()


def test_the_app_installs_the_cache_at_start_up() -> None:
    assert saml_schemas.library_version() in saml_schemas.WRITTEN_FOR
    assert saml_schemas.installed()
