"""manage.py add_oidc_idp against the independent OpenID provider's real discovery document."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from federation.models import AuditEvent, IdentityProvider
from tests.aws import free_port
from tests.factories import IdentityProviderFactory
from tests.federation.test_oidc import assert_refused, sign_in_through_provider
from tests.oidc_fixture import CLIENT_ID, CLIENT_SECRET, OpenIDProvider

pytestmark = pytest.mark.django_db


def add(issuer: str, *extra: str, slug: str = "corp") -> str:
    out = io.StringIO()
    call_command(
        "add_oidc_idp", "--slug", slug, "--issuer", issuer, "--client-id", CLIENT_ID, *extra,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


def test_registers_the_provider_from_discovery_and_keeps_the_secret_sealed(
    openid_provider: OpenIDProvider,
) -> None:
    output = add(openid_provider.issuer, "--client-secret", CLIENT_SECRET)

    assert "http://127.0.0.1:8000/oidc/corp/callback/" in output
    assert CLIENT_SECRET not in output
    idp = IdentityProvider.objects.get(slug="corp")
    assert (idp.protocol, idp.entity_id, idp.groups_attribute) == (
        "oidc",
        openid_provider.issuer,
        "groups",
    )
    config = idp.config
    assert config["token_endpoint"] == f"{openid_provider.issuer}/token"
    assert config["scopes"] == "openid email profile groups"  # groups is an advertised scope
    assert config["id_token_algorithms"] == ["RS256"]
    assert config["iss_parameter_supported"] is True
    assert CLIENT_SECRET not in json.dumps(config)
    event = AuditEvent.objects.get(event_type="idp.registered")
    assert CLIENT_SECRET not in json.dumps(event.data)
    assert "client_secret_sealed" not in event.data


def test_discovery_issuer_must_match_exactly(openid_provider: OpenIDProvider) -> None:
    with pytest.raises(CommandError, match="must be identical"):
        add(openid_provider.issuer + "/", "--client-secret", CLIENT_SECRET)
    assert not IdentityProvider.objects.exists()


def test_plain_http_issuer_is_refused_unless_loopback() -> None:
    with pytest.raises(CommandError, match="https"):
        add("http://idp.example.com", "--client-secret", CLIENT_SECRET)


def test_unreachable_issuer_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="unreachable"):
        add(f"http://127.0.0.1:{free_port()}", "--client-secret", CLIENT_SECRET)


def test_saml_idp_is_not_overwritten(openid_provider: OpenIDProvider) -> None:
    IdentityProviderFactory(slug="corp", protocol="saml")
    with pytest.raises(CommandError, match="already a saml"):
        add(openid_provider.issuer, "--client-secret", CLIENT_SECRET)


def test_running_again_updates_the_provider(openid_provider: OpenIDProvider) -> None:
    add(openid_provider.issuer, "--client-secret", CLIENT_SECRET)
    add(openid_provider.issuer, "--client-secret", CLIENT_SECRET, "--groups-claim", "roles")
    assert IdentityProvider.objects.get(slug="corp").groups_attribute == "roles"
    assert AuditEvent.objects.filter(event_type="idp.updated").count() == 1


def test_secret_can_live_in_the_environment(
    openid_provider: OpenIDProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(openid_provider.issuer, "--client-secret-env", "CORP_OIDC_SECRET")
    client = Client()
    monkeypatch.delenv("CORP_OIDC_SECRET", raising=False)
    response = sign_in_through_provider(client, openid_provider)
    assert_refused(client, response, "oidc.misconfigured", status=503)

    monkeypatch.setenv("CORP_OIDC_SECRET", CLIENT_SECRET)
    assert sign_in_through_provider(Client(), openid_provider).status_code == 302


def test_sealed_secret_does_not_open_under_another_key(openid_provider: OpenIDProvider) -> None:
    add(openid_provider.issuer, "--client-secret", CLIENT_SECRET)
    client = Client()
    with override_settings(OIDC_SECRET_KEY="a-different-key"):
        response = sign_in_through_provider(client, openid_provider)
    event = assert_refused(client, response, "oidc.misconfigured", status=503)
    assert "does not open" in event.data["problem"]
