"""The portal's CSP lets the console button reach AWS, and nothing else (issue 12 item 4).

The browser journey (tests/browser/test_journeys.py) proves it in Chromium; these pin the
header's exact form-action for the configurations a deployment has.
"""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws.sts import console_destination
from federation.middleware import AWS_CONSOLE_ORIGINS

pytestmark = pytest.mark.django_db


def _form_action(client: Client) -> list[str]:
    policy = client.get("/login/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    return directives["form-action"].split()


def test_form_action_allows_exactly_the_federation_origin(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.AWS_FEDERATION_URL = "https://signin.aws.amazon.com/federation?x=1"
    assert _form_action(client) == [
        "'self'",
        "https://signin.aws.amazon.com",
        AWS_CONSOLE_ORIGINS,
    ]


def test_a_federation_endpoint_on_a_port_is_allowed_on_that_port_only(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.AWS_FEDERATION_URL = "http://localhost:9999/demo-federation/"
    assert "http://localhost:9999" in _form_action(client)
    assert "http://localhost" not in _form_action(client)


def test_a_same_origin_federation_endpoint_adds_nothing(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.AWS_FEDERATION_URL = f"{settings.BASE_URL}/demo-federation/"
    assert _form_action(client) == ["'self'", AWS_CONSOLE_ORIGINS]


def test_the_console_origin_covers_every_region_destination() -> None:
    # AWS's federation endpoint redirects to the Destination we send; Chromium checks form-action
    # on that hop too.
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
        parts = urlsplit(console_destination(region))
        origin = f"{parts.scheme}://{parts.netloc}"
        assert fnmatch.fnmatch(origin, AWS_CONSOLE_ORIGINS)
        assert not fnmatch.fnmatch("https://evil.example", AWS_CONSOLE_ORIGINS)
