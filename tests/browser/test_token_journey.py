"""The personal API token page in Chromium: create a token, see it once, revoke it.

Chromium sends `Origin: null` with a form POST from a `Referrer-Policy: no-referrer` page, and
Django's CSRF origin check refuses that: this journey is what catches it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, expect
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.models import ApiToken, AuditEvent
from tests.browser.conftest import BrowserIdp, assert_accessible, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice(browser_idp: BrowserIdp, settings: SettingsWrapper) -> BrowserIdp:
    browser_idp.add("alice", "alice@corp.example", ["aws-pb-cloud-eng"])
    return browser_idp


def test_person_creates_and_revokes_a_token_in_the_browser(
    alice: BrowserIdp, site: str, new_context: Callable[[], BrowserContext]
) -> None:
    page = new_context().new_page()
    sign_in(page, site, "alice")
    page.goto(f"{site}/tokens/")
    page.get_by_label("Name").fill("laptop")
    with page.expect_response(f"{site}/tokens/") as created:
        page.get_by_role("button", name="Create token").click()

    assert created.value.status == 200
    expect(page.get_by_text("Copy it now; it is not shown again")).to_be_visible()
    plaintext = page.locator(".messages pre code").inner_text()
    assert plaintext.startswith(ApiToken.objects.get().prefix)
    assert_accessible(page)
    screenshot(page, "employee-api-token")

    page.get_by_role("button", name="Revoke token laptop").click()
    expect(page.locator("table")).to_contain_text("revoked")
    assert ApiToken.objects.get().revoked_at is not None
    assert not AuditEvent.objects.filter(event_type="request.csrf_refused").exists()
