"""MFA as a SAML IdP asserts it, read from real signed responses of the pysaml2 IdP: the
AuthnContextClassRef (AD FS, Okta), Entra ID's authentication-methods attribute, the
AuthnInstant; and the step-up AuthnRequest (ForceAuthn, RequestedAuthnContext)."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from lxml import etree

from federation.idp.mfa import ENTRA_AUTHN_METHODS, MS_MULTIPLEAUTHN, OKTA_2FA_ANY
from federation.models import AuditEvent, IdentityProvider, SignIn
from tests.saml_idp import EMAIL_OID, NS, SamlFlow

pytestmark = pytest.mark.django_db

PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ENTRA_PASSWORD = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"


def _attributes(**extra: list[str]) -> dict[str, list[str]]:
    return {
        "email": ["alice@corp.example"],
        "groups": ["aws-pb-cloud-eng"],
        **extra,
    }


def _sign_in(flow: SamlFlow, **kwargs: Any) -> SignIn:
    seen = flow.start()
    answer = flow.post(flow.signer.response_xml(seen, **kwargs), seen.relay_state)
    # Never an error page, whatever the authentication context says.
    assert answer.status_code == 302, answer.content
    return SignIn.objects.latest("pk")


def test_ad_fs_multipleauthn_class_counts_as_mfa_with_its_authn_instant(
    saml_flow: SamlFlow,
) -> None:
    instant = int(time.time()) - 120

    sign_in = _sign_in(
        saml_flow,
        attributes=_attributes(),
        authn={"class_ref": MS_MULTIPLEAUTHN, "authn_instant": instant},
    )

    assert sign_in.mfa is True
    assert sign_in.authenticated_at is not None
    assert int(sign_in.authenticated_at.timestamp()) == instant
    event = AuditEvent.objects.get(event_type="signin.success")
    assert event.data["mfa"]["mfa"] is True
    assert event.data["mfa"]["evidence"] == [MS_MULTIPLEAUTHN]


def test_okta_2fa_class_counts_as_mfa(saml_flow: SamlFlow) -> None:
    assert _sign_in(saml_flow, attributes=_attributes(), authn={"class_ref": OKTA_2FA_ANY}).mfa


def test_a_password_class_is_no_mfa_and_still_signs_in(saml_flow: SamlFlow) -> None:
    sign_in = _sign_in(saml_flow, attributes=_attributes())
    assert sign_in.mfa is False
    assert sign_in.authenticated_at is not None


def test_an_unknown_class_is_no_mfa_not_an_error(saml_flow: SamlFlow) -> None:
    sign_in = _sign_in(
        saml_flow, attributes=_attributes(), authn={"class_ref": "urn:example:ac:made-up"}
    )
    assert sign_in.mfa is False


def test_an_authn_context_without_class_is_no_mfa_not_an_error(saml_flow: SamlFlow) -> None:
    # Schema-valid: an AuthnContext may name a declaration instead of a class.
    def declaration_only(root: etree._Element) -> None:
        for ref in root.iter(f"{{{NS['saml']}}}AuthnContextClassRef"):
            ref.tag = f"{{{NS['saml']}}}AuthnContextDeclRef"
            ref.text = "https://idp.example/declarations/password"

    sign_in = _sign_in(saml_flow, attributes=_attributes(), edit=declaration_only)

    assert sign_in.mfa is False
    event = AuditEvent.objects.get(event_type="signin.success")
    assert event.data["mfa"] == {
        "mfa": False,
        "evidence": [],
        "authenticated_at": sign_in.authenticated_at.isoformat(),  # type: ignore[union-attr]
    }


def test_entra_ids_authn_methods_attribute_counts_as_mfa(saml_flow: SamlFlow) -> None:
    sign_in = _sign_in(
        saml_flow,
        attributes=_attributes(**{ENTRA_AUTHN_METHODS: [ENTRA_PASSWORD, MS_MULTIPLEAUTHN]}),
    )
    assert sign_in.mfa is True


def test_entra_password_only_methods_are_no_mfa(saml_flow: SamlFlow) -> None:
    sign_in = _sign_in(saml_flow, attributes=_attributes(**{ENTRA_AUTHN_METHODS: [ENTRA_PASSWORD]}))
    assert sign_in.mfa is False


def test_an_mfa_value_in_another_attribute_does_not_count(saml_flow: SamlFlow) -> None:
    # A user-editable attribute (a display name, a title) must never vouch for MFA.
    sign_in = _sign_in(saml_flow, attributes=_attributes(title=[MS_MULTIPLEAUTHN]))
    assert sign_in.mfa is False


def test_an_authn_instant_in_the_future_is_not_believed(saml_flow: SamlFlow) -> None:
    sign_in = _sign_in(
        saml_flow,
        attributes=_attributes(),
        authn={"class_ref": MS_MULTIPLEAUTHN, "authn_instant": int(time.time()) + 3600},
    )
    assert sign_in.mfa is True and sign_in.authenticated_at is None


def test_the_idps_own_mfa_classes_replace_the_default(saml_flow: SamlFlow) -> None:
    saml_flow.idp.mfa_authn_contexts = ["urn:example:ac:hardware-key"]
    saml_flow.idp.save()

    assert _sign_in(
        saml_flow, attributes=_attributes(), authn={"class_ref": "urn:example:ac:hardware-key"}
    ).mfa
    assert not _sign_in(
        saml_flow, attributes=_attributes(), authn={"class_ref": MS_MULTIPLEAUTHN}
    ).mfa


# --- asking for a fresh MFA sign-in ----------------------------------------------------------


def _seen(flow: SamlFlow, **query: str) -> Any:
    answer = flow.client.get(f"/saml/{flow.idp.slug}/login/", query)
    assert answer.status_code == 302
    return flow.signer.read_redirect(answer["Location"])


def test_an_ordinary_sign_in_asks_for_nothing(saml_flow: SamlFlow) -> None:
    seen = _seen(saml_flow)
    assert seen.force_authn is False and seen.requested_contexts == ()


def test_a_step_up_asks_for_force_authn_and_the_mfa_classes(saml_flow: SamlFlow) -> None:
    seen = _seen(saml_flow, step_up="1", next="/step-up/?account=1&done=1")
    assert seen.force_authn is True
    assert MS_MULTIPLEAUTHN in seen.requested_contexts
    assert OKTA_2FA_ANY in seen.requested_contexts


def test_entra_registration_asks_for_force_authn_only(saml_flow: SamlFlow, tmp_path: Any) -> None:
    metadata = tmp_path / "idp.xml"
    metadata.write_bytes(saml_flow.signer.metadata_xml())
    out = io.StringIO()
    call_command(
        "add_saml_idp",
        "--slug",
        "corp",
        "--metadata-file",
        str(metadata),
        "--email-attribute",
        EMAIL_OID,
        "--mfa-authn-contexts",
        MS_MULTIPLEAUTHN,
        "--no-requested-authn-context",
        stdout=out,
    )
    assert "MFA classes: " + MS_MULTIPLEAUTHN in out.getvalue()
    saml_flow.idp = IdentityProvider.objects.get(slug="corp")
    assert saml_flow.idp.mfa_authn_contexts == [MS_MULTIPLEAUTHN]

    seen = _seen(saml_flow, step_up="1")
    assert seen.force_authn is True and seen.requested_contexts == ()


def test_a_bad_mfa_class_list_is_refused_by_the_command(saml_flow: SamlFlow, tmp_path: Any) -> None:
    metadata = tmp_path / "idp.xml"
    metadata.write_bytes(saml_flow.signer.metadata_xml())
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="is not a URI"):
        call_command(
            "add_saml_idp",
            "--slug",
            "corp",
            "--metadata-file",
            str(metadata),
            "--mfa-authn-contexts",
            "two words",
            stdout=io.StringIO(),
        )


def test_a_second_sign_in_of_the_same_person_gets_a_new_session_id(saml_flow: SamlFlow) -> None:
    # A step-up signs the same person in again in the same browser: Django's login() keeps the
    # session id then, so a session id known before the step-up would survive it.
    _sign_in(saml_flow, attributes=_attributes())
    first = saml_flow.client.session.session_key
    stepped_up = _sign_in(saml_flow, attributes=_attributes(), authn={"class_ref": OKTA_2FA_ANY})
    assert stepped_up.mfa
    second = saml_flow.client.session.session_key
    assert first and second and first != second
    assert not SessionStore().exists(first)
