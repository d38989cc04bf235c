"""SAML sign-in through the HTTP endpoints, with responses signed by pysaml2 (tests/saml_idp.py)."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re

import pytest
from django.utils import timezone
from lxml import etree

from federation.idp import saml_requests
from federation.models import (
    AuditEvent,
    SamlAuthnRequest,
    SamlConsumedAssertion,
    SignIn,
    User,
)
from federation.tasks import purge_saml_replay_cache
from tests.saml_idp import NS, SamlFlow, b64

pytestmark = pytest.mark.django_db


def test_sp_initiated_sign_in_creates_the_person_and_a_session(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start(next_path="/requests/")
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state)

    assert answer.status_code == 302, answer.content.decode()
    assert answer["Location"] == "/requests/"
    user = User.objects.get(idp=saml_flow.idp, subject="00u-alice")
    assert user.email == "alice@corp.example"
    assert user.directory_groups == ["aws-pb-cloud-eng", "everyone"]
    assert user.manager == "bob@corp.example"
    assert SignIn.objects.get(user=user).groups == ["aws-pb-cloud-eng", "everyone"]
    assert saml_flow.client.session["_auth_user_id"] == str(user.pk)
    assert AuditEvent.objects.filter(event_type="signin.success").count() == 1


def test_logout_ends_the_session_and_offers_the_idps_single_logout(saml_flow: SamlFlow) -> None:
    from urllib.parse import parse_qs, urlsplit

    from saml2 import BINDING_HTTP_REDIRECT

    assert saml_flow.sign_in().status_code == 302
    answer = saml_flow.client.post("/logout/")
    assert answer.status_code == 200
    assert "_auth_user_id" not in saml_flow.client.session
    link = re.search(r'href="(https://corp\.idp\.test/slo\?[^"]+)"', answer.content.decode())
    assert link is not None
    url = html.unescape(link.group(1))
    query = parse_qs(urlsplit(url).query)
    # pysaml2, the independent IdP, reads our LogoutRequest.
    parsed = saml_flow.signer.server.parse_logout_request(
        query["SAMLRequest"][0], BINDING_HTTP_REDIRECT
    )
    assert parsed.message.name_id.text == "00u-alice"
    sign_in = SignIn.objects.get()
    assert parsed.message.session_index[0].text == sign_in.auth_context["session_index"]
    assert saml_flow.client.get("/saml/corp/sls/").status_code == 302


def test_logout_without_single_logout_goes_back_to_sign_in(saml_flow: SamlFlow) -> None:
    saml_flow.idp.config["slo_url"] = ""
    saml_flow.idp.save()
    assert saml_flow.sign_in().status_code == 302
    answer = saml_flow.client.post("/logout/")
    assert (answer.status_code, answer["Location"]) == (302, "/login/")


def test_responses_never_reach_the_logs(
    saml_flow: SamlFlow, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = saml_flow.start()
    xml = saml_flow.signer.response_xml(seen)
    assert saml_flow.post(xml, seen.relay_state).status_code == 302
    assert saml_flow.post(xml, seen.relay_state).status_code == 403  # replay, logged by Django
    # Everything but the test IdP's own (pysaml2) logging: Django, python3-saml, ours.
    product = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("saml2", "xmlschema"))
    )
    assert "Forbidden" in product
    assert b64(xml)[:200] not in product
    assert "00u-alice" not in product and "Assertion" not in product
    # The audit log keeps the assertion's ID as a value, never the response or its XML.
    audit = json.dumps([event.data for event in AuditEvent.objects.order_by("seq")])
    encoded = b64(xml)
    chunks = [encoded[i : i + 40] for i in range(0, len(encoded) - 40, 40)]
    assert chunks and not [chunk for chunk in chunks if chunk in audit]
    assertion = etree.fromstring(xml).find("saml:Assertion", NS)
    assert assertion is not None
    opening_tag = re.search(rb"<(?:\w+:)?Assertion\b[^>]*>", xml)
    assert opening_tag is not None and assertion.get("ID")
    assert str(assertion.get("ID")) in audit  # as the signed-in session's assertion_id
    for fragment in (opening_tag.group().decode(), f'ID="{assertion.get("ID")}"', ":Assertion"):
        assert json.dumps(fragment)[1:-1] not in audit, fragment


def test_expired_replay_records_and_old_requests_are_purged(saml_flow: SamlFlow) -> None:
    assert saml_flow.sign_in().status_code == 302
    later = timezone.now() + dt.timedelta(days=2)
    assert purge_saml_replay_cache.delay().get() == 0
    assert saml_requests.purge_expired(now=later) == 2
    assert not SamlConsumedAssertion.objects.exists()
    assert not SamlAuthnRequest.objects.exists()
