"""The attack suite of SECURITY.md §1: every case starts from a real response signed by pysaml2,
then is altered. Each must answer a 4xx page, create no session or user, and audit the reason."""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from django.test import Client
from lxml import etree

from federation.models import AuditEvent, SamlConsumedAssertion, User
from tests.saml_idp import NS, SHA1, PysamlIdp, SamlFlow, b64, make_flow, make_key_pair

pytestmark = pytest.mark.django_db

DS = "{http://www.w3.org/2000/09/xmldsig#}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"


def assert_refused(
    flow: SamlFlow, answer: object, *reasons: str, users: int = 0, client: Client | None = None
) -> str:
    status = answer.status_code  # type: ignore[attr-defined]
    content = answer.content.decode()  # type: ignore[attr-defined]
    assert 400 <= status < 500, (status, content[-600:])
    assert "Sign-in refused" in content
    assert "_auth_user_id" not in (client or flow.client).session
    assert User.objects.count() == users
    event = AuditEvent.objects.filter(event_type="signin.refused").order_by("-id").first()
    assert event is not None
    assert event.data["reason"] in reasons, event.data
    return str(event.data["reason"])


def _saml_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def _assertion(root: etree._Element) -> etree._Element:
    found = root.find(f"{SAML}Assertion")
    assert found is not None
    return found


def _evil_copy(assertion: etree._Element, subject: str = "00u-admin") -> etree._Element:
    evil = copy.deepcopy(assertion)
    evil.set("ID", "id-evil")
    for signature in evil.findall(f"{DS}Signature"):
        evil.remove(signature)
    name_id = evil.find(f"{SAML}Subject/{SAML}NameID")
    assert name_id is not None
    name_id.text = subject
    return evil


# --------------------------------------------------------------------------- signatures


def test_unsigned_response_and_assertion_are_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in(sign_assertion=False)
    assert_refused(saml_flow, answer, "saml.unsigned")


def test_signed_response_wrapping_an_unsigned_assertion_is_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in(sign_assertion=False, sign_response=True)
    assert_refused(saml_flow, answer, "saml.unsigned")


def test_response_signed_by_a_key_not_in_metadata_is_refused(
    saml_flow: SamlFlow, tmp_path: Path
) -> None:
    # The attacker's certificate travels in KeyInfo; only the pinned one may verify.
    key_pem, cert_pem = make_key_pair("attacker")
    attacker = PysamlIdp(
        entity_id=saml_flow.signer.entity_id,
        workdir=tmp_path / "attacker",
        key_pem=key_pem,
        cert_pem=cert_pem,
        sso_url=saml_flow.signer.sso_url,
        sp_metadata=list(saml_flow.signer.sp_metadata),
    )
    seen = saml_flow.start()
    answer = saml_flow.post(attacker.response_xml(seen), seen.relay_state)
    assert_refused(saml_flow, answer, "saml.bad_signature")


def test_sha1_signature_is_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in(algorithms=SHA1)
    assert_refused(saml_flow, answer, "saml.deprecated_algorithm")


def test_content_edited_after_signing_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen).replace(b"00u-alice", b"00u-admin")
    assert_refused(saml_flow, saml_flow.post(xml, seen.relay_state), "saml.bad_signature")


# --------------------------------------------------------------------------- wrapping (XSW)


def _xsw(flow: SamlFlow, mutate: object, *, sign_response: bool = False) -> object:
    seen = flow.start()
    root = _parse(flow.signer.response_xml(seen, sign_response=sign_response))
    mutate(root)  # type: ignore[operator]
    return flow.post(etree.tostring(root), seen.relay_state)


# Each wrapping variant is caught before any identity is read: one assertion, signed elements
# bound to their IDs, no ds:Object, XSD (python3-saml strict plus _check_structure).
STRUCTURAL = ("saml.structure",)


def test_xsw3_evil_assertion_before_the_signed_one_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        original = _assertion(root)
        root.insert(list(root).index(original), _evil_copy(original))

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw4_evil_assertion_after_the_signed_one_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        root.append(_evil_copy(_assertion(root)))

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw4_evil_assertion_wrapping_the_signed_one_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        original = _assertion(root)
        evil = _evil_copy(original)
        root.replace(original, evil)
        evil.append(original)

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw5_edited_signed_assertion_with_clean_copy_at_the_end_is_refused(
    saml_flow: SamlFlow,
) -> None:
    def mutate(root: etree._Element) -> None:
        original = _assertion(root)
        clean = copy.deepcopy(original)
        clean.set("ID", "id-clean")
        for signature in clean.findall(f"{DS}Signature"):
            clean.remove(signature)
        name_id = original.find(f"{SAML}Subject/{SAML}NameID")
        assert name_id is not None
        name_id.text = "00u-admin"
        root.append(clean)

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw6_clean_copy_inside_the_signature_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        original = _assertion(root)
        clean = copy.deepcopy(original)
        for signature in clean.findall(f"{DS}Signature"):
            clean.remove(signature)
        name_id = original.find(f"{SAML}Subject/{SAML}NameID")
        assert name_id is not None
        name_id.text = "00u-admin"
        signature = original.find(f"{DS}Signature")
        assert signature is not None
        obj = etree.SubElement(signature, f"{DS}Object")
        obj.append(clean)

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw7_signed_assertion_moved_into_extensions_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        original = _assertion(root)
        evil = _evil_copy(original)
        root.replace(original, evil)
        extensions = etree.Element(f"{SAMLP}Extensions")
        extensions.append(original)
        root.insert(1, extensions)

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw8_signed_assertion_moved_into_ds_object_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        original = _assertion(root)
        evil = _evil_copy(original)
        signature = copy.deepcopy(original.find(f"{DS}Signature"))
        assert signature is not None
        root.replace(original, evil)
        obj = etree.SubElement(signature, f"{DS}Object")
        obj.append(original)
        evil.insert(1, signature)

    assert_refused(saml_flow, _xsw(saml_flow, mutate), *STRUCTURAL)


def test_xsw1_wrapped_signed_response_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        # Evil response on top; the signed original hidden inside its Signature.
        signature = root.find(f"{DS}Signature")
        assert signature is not None
        original = copy.deepcopy(root)
        root.set("ID", "id-evil-response")
        assertion = _assertion(root)
        root.replace(assertion, _evil_copy(assertion))
        obj = etree.SubElement(signature, f"{DS}Object")
        obj.append(original)

    assert_refused(saml_flow, _xsw(saml_flow, mutate, sign_response=True), *STRUCTURAL)


def test_xsw2_signed_response_cloned_before_the_signature_is_refused(saml_flow: SamlFlow) -> None:
    def mutate(root: etree._Element) -> None:
        signature = root.find(f"{DS}Signature")
        assert signature is not None
        original = copy.deepcopy(root)
        original.remove(original.find(f"{DS}Signature"))  # type: ignore[arg-type]
        root.set("ID", "id-evil-response")
        root.insert(list(root).index(signature), original)

    assert_refused(saml_flow, _xsw(saml_flow, mutate, sign_response=True), *STRUCTURAL)


# --------------------------------------------------------------------------- parsing


def test_comment_in_nameid_never_truncates_the_subject(saml_flow: SamlFlow) -> None:
    # The victim exists; the attacker's own account at the IdP is alice@corp.example.evil.test.
    saml_flow.sign_in(subject="alice@corp.example")
    victim = User.objects.get(subject="alice@corp.example")
    saml_flow.client.logout()
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen, subject="alice@corp.example.evil.test")
    tampered = xml.replace(
        b">alice@corp.example.evil.test<", b">alice@corp.example<!---->.evil.test<"
    )
    assert tampered != xml
    answer = saml_flow.post(tampered, seen.relay_state)
    assert_refused(saml_flow, answer, "saml.comment", users=1)
    assert User.objects.get() == victim


def test_comment_in_a_mapped_attribute_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    tampered = xml.replace(b">aws-pb-cloud-eng<", b">aws-pb-<!-- -->cloud-eng<")
    assert tampered != xml
    assert_refused(saml_flow, saml_flow.post(tampered, seen.relay_state), "saml.comment")


def _reencoded(xml: bytes, encoding: str, declared: str) -> bytes:
    text = xml.decode()
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2 :].lstrip()
    return f'<?xml version="1.0" encoding="{declared}"?>\n{text}'.encode(encoding)


@pytest.mark.parametrize(
    ("encoding", "declared"),
    [
        ("utf-16", "UTF-16"),
        ("utf-16-be", "UTF-16BE"),
        ("utf-16-le", "UTF-16LE"),
        ("utf-32", "UTF-32"),
    ],
)
def test_utf16_response_cannot_hide_a_comment_from_the_scan(
    saml_flow: SamlFlow, encoding: str, declared: str
) -> None:
    # In UTF-16 ``<!--`` is not the bytes the comment scan looks for; the parser still reads it.
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen, subject="alice@corp.example.evil.test")
    tampered = xml.replace(
        b">alice@corp.example.evil.test<", b">alice@corp.example<!---->.evil.test<"
    )
    assert tampered != xml
    document = _reencoded(tampered, encoding, declared)
    assert b"<!--" not in document
    answer = saml_flow.post(document, seen.relay_state)
    assert answer.status_code == 400
    assert_refused(saml_flow, answer, "saml.encoding")


def test_signed_response_re_encoded_as_utf16_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    document = _reencoded(saml_flow.signer.response_xml(seen), "utf-16", "UTF-16")
    assert document.startswith(b"\xff\xfe")
    assert_refused(saml_flow, saml_flow.post(document, seen.relay_state), "saml.encoding")


def test_declared_non_utf8_encoding_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    document = _reencoded(saml_flow.signer.response_xml(seen), "utf-8", "ISO-8859-1")
    assert_refused(saml_flow, saml_flow.post(document, seen.relay_state), "saml.encoding")


XXE_SYSTEM = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="a" Version="2.0">&x;
</samlp:Response>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="a" Version="2.0">&d;
</samlp:Response>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="a" Version="2.0"/>"""


@pytest.mark.parametrize("document", [XXE_SYSTEM, BILLION_LAUGHS, PARAMETER_ENTITY])
def test_dtd_and_entities_are_refused(saml_flow: SamlFlow, document: bytes) -> None:
    seen = saml_flow.start()
    started = time.perf_counter()
    answer = saml_flow.post(document, seen.relay_state)
    assert time.perf_counter() - started < 1.0
    assert_refused(saml_flow, answer, "saml.dtd")


XSLT = b"""<ds:Transform xmlns:ds="http://www.w3.org/2000/09/xmldsig#"
 Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet version="1.0"
 xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:template match="/"><xsl:for-each
 select="//node()|//@*"><xsl:for-each select="//node()|//@*"><xsl:for-each
 select="//node()|//@*"><x/></xsl:for-each></xsl:for-each></xsl:for-each></xsl:template>
 </xsl:stylesheet></ds:Transform>"""


def test_xslt_transform_bomb_is_refused_quickly(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    root = _parse(saml_flow.signer.response_xml(seen))
    transforms = root.find(f".//{DS}Transforms")
    assert transforms is not None
    transforms.insert(0, etree.fromstring(XSLT))
    started = time.perf_counter()
    answer = saml_flow.post(etree.tostring(root), seen.relay_state)
    assert time.perf_counter() - started < 1.0
    assert_refused(saml_flow, answer, "saml.transform")


def test_malformed_base64_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    answer = saml_flow.post(None, seen.relay_state, raw="PHNhbWw+*not base64*")
    assert_refused(saml_flow, answer, "saml.malformed")


def test_malformed_xml_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    answer = saml_flow.post(b"<samlp:Response><unclosed>", seen.relay_state)
    assert_refused(saml_flow, answer, "saml.malformed")


def test_empty_post_is_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.client.post("/saml/corp/acs/", {})
    assert_refused(saml_flow, answer, "saml.missing_response")


def test_oversized_post_is_refused_before_parsing(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    answer = saml_flow.post(None, seen.relay_state, raw="A" * 300_000)
    assert answer.status_code == 413
    assert_refused(saml_flow, answer, "saml.too_large")


# --------------------------------------------------------------------------- replay and binding


def test_replayed_response_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    # The attacker copied the victim's whole POST, login-start cookie included.
    attacker = Client()
    attacker.cookies = SimpleCookie(saml_flow.client.cookies)
    assert saml_flow.post(xml, seen.relay_state).status_code == 302
    answer = saml_flow.post(xml, seen.relay_state, client=attacker)
    assert_refused(saml_flow, answer, "saml.replay", users=1, client=attacker)
    assert SamlConsumedAssertion.objects.count() == 1


def test_replayed_response_under_a_fresh_login_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    assert saml_flow.post(xml, seen.relay_state).status_code == 302
    attacker = Client()
    fresh = saml_flow.start(client=attacker)
    answer = saml_flow.post(xml, fresh.relay_state, client=attacker)
    assert_refused(saml_flow, answer, "saml.in_response_to", users=1, client=attacker)


@pytest.mark.django_db(transaction=True)
def test_parallel_replays_sign_in_once(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        from django.db import connection

        barrier.wait()
        browser = Client()
        browser.cookies = SimpleCookie(saml_flow.client.cookies)
        try:
            statuses.append(saml_flow.post(xml, seen.relay_state, client=browser).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302, 403, 403, 403]
    assert User.objects.count() == 1
    reasons = set(
        AuditEvent.objects.filter(event_type="signin.refused").values_list(
            "data__reason", flat=True
        )
    )
    assert reasons == {"saml.replay"}


def test_missing_in_response_to_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        del root.attrib["InResponseTo"]
        for data in root.iter(f"{SAML}SubjectConfirmationData"):
            del data.attrib["InResponseTo"]

    answer = saml_flow.sign_in(edit=edit)
    assert_refused(saml_flow, answer, "saml.in_response_to")


def test_response_to_another_login_is_refused(saml_flow: SamlFlow) -> None:
    first = saml_flow.start()
    other = Client()
    second = saml_flow.start(client=other)
    # The response answers the victim's request but rides the attacker's RelayState.
    answer = saml_flow.post(saml_flow.signer.response_xml(first), second.relay_state, client=other)
    assert_refused(saml_flow, answer, "saml.in_response_to", client=other)


def test_unsolicited_response_is_refused_when_idp_initiated_is_off(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), None)
    assert_refused(saml_flow, answer, "saml.unsolicited")


def test_unknown_relay_state_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), "forged-relay-state")
    assert_refused(saml_flow, answer, "saml.unsolicited")


def test_idp_initiated_response_only_restarts_an_sp_initiated_login(saml_flow: SamlFlow) -> None:
    saml_flow.idp.config["allow_idp_initiated"] = True
    saml_flow.idp.save()
    seen = saml_flow.start()
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), None)
    assert answer.status_code == 302
    assert answer["Location"] == "/saml/corp/login/"
    assert "_auth_user_id" not in saml_flow.client.session
    assert not User.objects.exists()


def test_response_for_idp_a_posted_to_idp_b_is_refused(
    saml_flow: SamlFlow, tmp_path: Path, client: Client
) -> None:
    other = make_flow("other", tmp_path, client)
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    assert_refused(
        saml_flow, saml_flow.post(xml, seen.relay_state, slug="other"), "saml.unsolicited"
    )
    # Even riding a genuine login at B, A's response is for A's request, audience and issuer.
    at_b = other.start()
    answer = saml_flow.post(xml, at_b.relay_state, slug="other")
    assert_refused(saml_flow, answer, "saml.in_response_to", "saml.bad_signature", "saml.issuer")


# --------------------------------------------------------------------------- conditions


def _set(root: etree._Element, xpath: str, attribute: str, value: str) -> None:
    nodes = root.findall(xpath, NS)
    assert nodes, xpath
    for node in nodes:
        node.set(attribute, value)


def test_wrong_audience_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        for audience in root.iter(f"{SAML}Audience"):
            audience.text = "https://another-sp.example/metadata"

    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.audience")


def test_missing_audience_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        for restriction in list(root.iter(f"{SAML}AudienceRestriction")):
            restriction.getparent().remove(restriction)  # type: ignore[union-attr]

    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.audience")


def test_destination_with_a_suffix_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        root.set("Destination", root.get("Destination", "") + "evil")

    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.destination")


def test_recipient_with_a_suffix_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        for data in root.iter(f"{SAML}SubjectConfirmationData"):
            data.set("Recipient", data.get("Recipient", "") + "evil")

    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.subject_confirmation")


def test_spoofed_host_header_does_not_move_the_acs_url(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        spoofed = "http://localhost/saml/corp/acs/"
        root.set("Destination", spoofed)
        for data in root.iter(f"{SAML}SubjectConfirmationData"):
            data.set("Recipient", spoofed)

    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen, edit=edit)
    answer = saml_flow.client.post(
        "/saml/corp/acs/",
        {"SAMLResponse": b64(xml), "RelayState": seen.relay_state},
        HTTP_HOST="localhost",
        HTTP_X_FORWARDED_HOST="localhost",
    )
    assert_refused(saml_flow, answer, "saml.destination", "saml.subject_confirmation")


def _shift_times(delta: dt.timedelta) -> object:
    def edit(root: etree._Element) -> None:
        now = dt.datetime.now(dt.UTC)
        _set(
            root,
            ".//saml:Conditions",
            "NotBefore",
            _saml_time(now + delta - dt.timedelta(minutes=1)),
        )
        _set(
            root,
            ".//saml:Conditions",
            "NotOnOrAfter",
            _saml_time(now + delta + dt.timedelta(minutes=1)),
        )
        _set(
            root,
            ".//saml:SubjectConfirmationData",
            "NotOnOrAfter",
            _saml_time(now + delta + dt.timedelta(minutes=1)),
        )

    return edit


def test_expired_response_is_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in(edit=_shift_times(-dt.timedelta(minutes=7)))
    assert_refused(saml_flow, answer, "saml.expired")


def test_not_yet_valid_response_is_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in(edit=_shift_times(dt.timedelta(minutes=7)))
    assert_refused(saml_flow, answer, "saml.not_yet_valid")


def test_missing_subject_confirmation_expiry_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        for data in root.iter(f"{SAML}SubjectConfirmationData"):
            del data.attrib["NotOnOrAfter"]

    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.subject_confirmation")


def test_transient_nameid_is_refused(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        for name_id in root.iter(f"{SAML}NameID"):
            name_id.set("Format", "urn:oasis:names:tc:SAML:2.0:nameid-format:transient")

    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.transient_subject")


def test_missing_email_is_refused(saml_flow: SamlFlow) -> None:
    answer = saml_flow.sign_in(attributes={"groups": ["g"]})
    assert_refused(saml_flow, answer, "saml.no_email")


@pytest.mark.parametrize(
    "target", ["//evil.test/", "/\\evil.test", "https://evil.test/", "javascript:alert(1)"]
)
def test_next_is_honoured_only_for_a_local_path(saml_flow: SamlFlow, target: str) -> None:
    seen = saml_flow.start(next_path=target)
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state)
    assert answer.status_code == 302
    assert answer["Location"] == "/"


def test_assertion_id_already_used_under_another_request_is_refused(saml_flow: SamlFlow) -> None:
    # The IdP reused an assertion id (or a copy got a fresh request): the database's unique
    # constraint on (idp, assertion id) is the arbiter, whatever process handles the POST.
    def edit(root: etree._Element) -> None:
        _assertion(root).set("ID", "id-used-before")

    SamlConsumedAssertion.objects.create(
        idp=saml_flow.idp,
        assertion_id="id-used-before",
        not_on_or_after=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        consumed_at=dt.datetime.now(dt.UTC),
    )
    assert_refused(saml_flow, saml_flow.sign_in(edit=edit), "saml.replay")


def test_encrypted_assertion_is_refused_with_a_clear_page(saml_flow: SamlFlow) -> None:
    def edit(root: etree._Element) -> None:
        assertion = _assertion(root)
        encrypted = etree.Element(f"{SAML}EncryptedAssertion")
        data = etree.SubElement(encrypted, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
        etree.SubElement(data, "{http://www.w3.org/2001/04/xmlenc#}CipherData")
        root.replace(assertion, encrypted)

    answer = saml_flow.sign_in(edit=edit, sign_assertion=False, sign_response=True)
    assert_refused(saml_flow, answer, "saml.unsupported")


def test_assertion_only_signature_is_refused_when_the_idp_signs_whole_responses(
    saml_flow: SamlFlow,
) -> None:
    saml_flow.idp.config["want_messages_signed"] = True
    saml_flow.idp.save()
    assert_refused(saml_flow, saml_flow.sign_in(), "saml.unsigned")
    assert saml_flow.sign_in(sign_response=True).status_code == 302


def test_non_numeric_content_length_is_not_a_server_error(saml_flow: SamlFlow) -> None:
    answer = saml_flow.client.post("/saml/corp/acs/", {}, CONTENT_LENGTH="x")
    assert 400 <= answer.status_code < 500
