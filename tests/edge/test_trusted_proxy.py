"""Forwarded headers are believed only from the proxies TRUSTED_PROXY_COUNT declares."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.edge.proxy import forwarded_client
from federation.models import AuditEvent
from tests.saml_idp import SamlFlow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("header", "trusted", "client"),
    [
        ("203.0.113.5", 1, "203.0.113.5"),
        ("6.6.6.6, 203.0.113.5", 1, "203.0.113.5"),  # the left entry is the client's own claim
        ("6.6.6.6, 203.0.113.5, 10.0.0.2", 2, "203.0.113.5"),
        ("2001:db8::1", 1, "2001:db8::1"),
        ("203.0.113.5:51234", 1, "203.0.113.5"),  # proxies that append the client's port
        ("[2001:db8::1]:51234", 1, "2001:db8::1"),
        ("[2001:db8::1", 1, None),
        ("203.0.113.5", 2, None),  # shorter than the declared chain: not believed
        ("not-an-address", 1, None),
        ("", 1, None),
        ("203.0.113.5", 0, None),
    ],
)
def test_forwarded_client_takes_the_address_the_trusted_proxies_saw(
    header: str, trusted: int, client: str | None
) -> None:
    assert forwarded_client(header, trusted) == client


@pytest.mark.django_db
def test_forwarded_for_is_ignored_unless_a_proxy_is_declared(
    saml_flow: SamlFlow, shared_limits: Callable[..., None], settings: SettingsWrapper
) -> None:
    shared_limits(signin="1/d")
    client = Client(REMOTE_ADDR="10.0.0.2")
    assert client.get("/saml/corp/login/", HTTP_X_FORWARDED_FOR="6.6.6.1").status_code == 302
    # A client inventing addresses gets no fresh budget, and the audit names the real peer.
    assert client.get("/saml/corp/login/", HTTP_X_FORWARDED_FOR="6.6.6.2").status_code == 429
    assert AuditEvent.objects.get(event_type="rate_limit.exceeded").ip == "10.0.0.2"

    settings.TRUSTED_PROXY_COUNT = 1
    assert client.get("/saml/corp/login/", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 302
    assert client.get("/saml/corp/login/", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    assert client.get("/saml/corp/login/", HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 302
    events = AuditEvent.objects.filter(event_type="rate_limit.exceeded").order_by("pk")
    assert [e.ip for e in events] == ["10.0.0.2", "203.0.113.5"]


def _settings_value(expression: str, **env: str) -> str:
    """A setting as a fresh production process reads it from the environment."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "TRUSTED_PROXY_COUNT"}}
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; from django.conf import settings; django.setup(); print({expression})",
        ],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "federation.settings",
            "SECRET_KEY": "x" * 50,
            "BASE_URL": "https://fed.example.com",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


def test_forwarded_proto_is_believed_only_with_a_declared_proxy() -> None:
    expression = "getattr(settings, 'SECURE_PROXY_SSL_HEADER', None)"
    assert _settings_value(expression) == "None"
    assert _settings_value(expression, TRUSTED_PROXY_COUNT="1") == (
        "('HTTP_X_FORWARDED_PROTO', 'https')"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("TRUSTED_PROXY_COUNT", "-1"), ("RATE_LIMIT_SIGNIN", "lots"), ("RATE_LIMIT_FAILURE", "x")],
)
def test_bad_edge_settings_stop_the_start_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _settings_value("1", **{name: value})
    assert name in failed.value.stderr
