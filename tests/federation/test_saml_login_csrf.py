"""SAML login CSRF: a pending login answers only the browser that started it (issue 12 item 3).

The attacker starts a login in their own browser, signs in at the IdP as themselves, and makes
the victim's browser POST that response (their RelayState, their signed assertion) to our ACS.
Without a binding to the starting browser the victim would be signed in as the attacker.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.idp import saml
from federation.models import AuditEvent, SamlAuthnRequest, User
from tests.saml_idp import SamlFlow

pytestmark = pytest.mark.django_db

COOKIE = "fedaccess-saml"


def _refusal(answer: object) -> str:
    assert answer.status_code == 403, answer.content.decode()[-400:]  # type: ignore[attr-defined]
    event = AuditEvent.objects.filter(event_type="signin.refused").order_by("-seq").first()
    assert event is not None
    return str(event.data["reason"])


def test_attackers_response_posted_from_the_victims_browser_is_refused(
    saml_flow: SamlFlow,
) -> None:
    attacker = Client()
    seen = saml_flow.start(client=attacker)
    xml = saml_flow.signer.response_xml(seen, subject="00u-mallory")
    victim = saml_flow.client
    saml_flow.start(client=victim)  # the victim has a login of their own under way

    answer = saml_flow.post(xml, seen.relay_state, client=victim)

    assert _refusal(answer) == "saml.other_browser"
    assert "_auth_user_id" not in victim.session
    assert not User.objects.exists()
    # Nothing was consumed: the attacker's own browser can still finish its own login.
    assert SamlAuthnRequest.objects.get(relay_state=seen.relay_state).consumed_at is None
    assert saml_flow.post(xml, seen.relay_state, client=attacker).status_code == 302
    assert User.objects.get().subject == "00u-mallory"


def test_response_posted_from_a_browser_without_the_cookie_is_refused(
    saml_flow: SamlFlow,
) -> None:
    seen = saml_flow.start(client=Client())
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state)
    assert _refusal(answer) == "saml.other_browser"
    assert not User.objects.exists()


def test_a_forged_cookie_value_is_refused(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    saml_flow.client.cookies[COOKIE] = "guessed"
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state)
    assert _refusal(answer) == "saml.other_browser"


def test_a_pending_login_without_a_binding_answers_no_browser(saml_flow: SamlFlow) -> None:
    # Logins started before the binding existed carry an empty one: an empty cookie must not
    # match it.
    seen = saml_flow.start()
    SamlAuthnRequest.objects.filter(relay_state=seen.relay_state).update(browser_binding="")
    saml_flow.client.cookies[COOKIE] = ""
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state)
    assert _refusal(answer) == "saml.other_browser"


def test_login_start_cookie_is_http_only_and_limited_to_the_acs(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start()
    morsel = saml_flow.client.cookies[COOKIE]
    assert (morsel["path"], morsel["httponly"], morsel["samesite"]) == (
        "/saml/corp/acs/",
        True,
        "Lax",
    )
    assert int(morsel["max-age"]) == int(saml.REQUEST_LIFETIME.total_seconds())
    stored = SamlAuthnRequest.objects.get(relay_state=seen.relay_state).browser_binding
    assert stored == saml.browser_binding(morsel.value) and morsel.value not in stored
    # Used once: a successful sign-in deletes it.
    assert saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state).status_code == 302
    assert saml_flow.client.cookies[COOKIE].value == ""


def test_under_https_the_cookie_survives_the_idps_cross_site_post(
    saml_flow: SamlFlow, settings: SettingsWrapper
) -> None:
    settings.BASE_URL = "https://fedaccess.example"
    answer = saml_flow.client.get("/saml/corp/login/")
    assert answer.status_code == 302
    morsel = SimpleCookie(answer.cookies)["__Secure-fedaccess-saml"]
    assert (morsel["samesite"], morsel["secure"], morsel["httponly"], morsel["path"]) == (
        "None",
        True,
        True,
        "/saml/corp/acs/",
    )
