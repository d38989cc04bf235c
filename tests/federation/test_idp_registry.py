"""The one registration path (federation/idp/registry.py) that SAML, OIDC and the demo IdP use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from federation.idp.registry import IdpFields, RegistrationRefused, save_idp
from federation.models import AuditEvent, IdentityProvider
from tests.factories import IdentityProviderFactory
from tests.saml_idp import PysamlIdp, cached_key_pair, register_signer

pytestmark = pytest.mark.django_db


def _signer(tmp_path: Path) -> PysamlIdp:
    key_pem, cert_pem = cached_key_pair("registry")
    return PysamlIdp(
        entity_id="https://corp.idp.test/saml",
        workdir=tmp_path / "idp",
        key_pem=key_pem,
        cert_pem=cert_pem,
        sso_url="https://corp.idp.test/sso",
    )


def test_a_saml_registration_cannot_take_over_an_oidc_idp(tmp_path: Path) -> None:
    IdentityProviderFactory(slug="corp", protocol="oidc", entity_id="https://o.test")
    with pytest.raises(RegistrationRefused, match="already a oidc identity provider"):
        register_signer("corp", _signer(tmp_path))
    assert IdentityProvider.objects.get(slug="corp").protocol == "oidc"
    assert not AuditEvent.objects.filter(event_type="idp.saml_registered").exists()


def test_registering_twice_updates_the_row_and_audits_both(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    first = register_signer("corp", signer, display_name="Corp")
    again = register_signer("corp", signer)
    assert again.pk == first.pk and again.display_name == "Corp"  # empty keeps the name
    created = list(
        AuditEvent.objects.filter(event_type="idp.saml_registered")
        .order_by("seq")
        .values_list("data__created", flat=True)
    )
    assert created == [True, False]


def test_the_config_function_sees_what_is_stored() -> None:
    IdentityProviderFactory(slug="x", protocol="saml", config={"kept": 1, "replaced": 1})
    idp, created = save_idp(
        "x",
        IdentityProvider.Protocol.SAML,
        IdpFields(entity_id="urn:x", config=lambda stored: {**stored, "replaced": 2}),
        event_type=lambda created: "idp.test_saved",
        audit_data={"note": "n"},
        actor="test",
        now=timezone.now(),
    )
    assert not created
    assert idp.config == {"kept": 1, "replaced": 2}
    event = AuditEvent.objects.get(event_type="idp.test_saved")
    assert event.data == {"idp": "x", "created": False, "note": "n"}


def test_the_demo_idp_command_refuses_a_demo_slug_of_another_protocol(
    settings: Any, tmp_path: Path
) -> None:
    settings.DEMO_MODE = True
    settings.DEMO_IDP_KEY_DIR = str(tmp_path / "demo-idp")
    IdentityProviderFactory(slug="demo", protocol="oidc", entity_id="https://o.test")
    with pytest.raises(CommandError, match="already a oidc identity provider"):
        call_command("demo_idp")
