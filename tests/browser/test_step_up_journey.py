"""The step-up round trip in Chromium (SPEC §4 Step-up): a password sign-in asks for CLI
credentials of a require_mfa role, is sent through a fresh MFA sign-in at the IdP (which sees
ForceAuthn) and lands back on the issuance it wanted; AWS (moto) receives MFA=true."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.utils import timezone
from playwright.sync_api import BrowserContext, expect
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import sts
from federation.mappings import apply_document, parse_document
from federation.models import AuditEvent, SignIn
from tests.aws import MotoServer
from tests.browser.conftest import BrowserIdp, assert_accessible, screenshot, sign_in
from tests.mapping_samples import PB_CLOUD_ENG, mapping_yaml

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = mapping_yaml(
    [
        PB_CLOUD_ENG,
        "{group: aws-pb-security, role: security, business_unit: pb, environments: [prod], "
        "access: standing}",
    ],
    roles=(
        "{name: cloud-eng, max_session_minutes: 60}",
        "{name: security, privileged: true, require_mfa: true, max_auth_age_minutes: 15}",
    ),
)


@pytest.fixture
def sam(browser_idp: BrowserIdp, settings: SettingsWrapper, aws: MotoServer) -> BrowserIdp:
    apply_document(parse_document(TABLES), actor="setup", source="import", now=timezone.now())
    settings.STS_REGIONS = ["us-east-1"]
    settings.STS_ENDPOINTS = []
    sts.reset_clients()
    browser_idp.add("sam", "sam@corp.example", ["aws-pb-cloud-eng", "aws-pb-security"])
    return browser_idp


def test_a_password_sign_in_steps_up_to_mfa_and_gets_the_credentials_it_wanted(
    sam: BrowserIdp, site: str, aws: MotoServer, new_context: Callable[[], BrowserContext]
) -> None:
    page = new_context().new_page()
    sign_in(page, site, "sam")
    assert SignIn.objects.get().mfa is False
    expect(page.locator('tr[data-role="security"] .tag', has_text="MFA")).to_be_visible()
    aws.start_recording()

    page.get_by_role("button", name="Get CLI credentials for pb-prod as security").click()
    expect(page.get_by_text("needs a sign-in with multi-factor authentication")).to_be_visible()
    page.get_by_role("link", name="Sign in again with MFA").click()

    # The IdP was asked for a fresh sign-in (ForceAuthn) and asks for a second factor.
    expect(page.get_by_role("heading", name="Test IdP (MFA)")).to_be_visible()
    page.get_by_role("button", name="Sign in as sam with password and second factor").click()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Signed in with MFA")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "employee-step-up")
    page.get_by_role("button", name="Show CLI credentials").click()

    expect(
        page.get_by_role("heading", name="CLI credentials for security in 222222222222")
    ).to_be_visible()
    assert "AccessKeyId" in page.content()
    fresh = SignIn.objects.latest("pk")
    assert fresh.mfa is True and fresh.authenticated_at is not None
    [sent] = aws.received("AssumeRole")
    keys = {k: v for k, v in sent.items() if k.startswith("Tags.member.")}
    assert {"MFA", "true"} <= set(keys.values())
    refused = AuditEvent.objects.get(event_type="issuance.refused")
    assert refused.data["reason"] == "step_up_required"
    assert AuditEvent.objects.filter(event_type="issuance.issued").count() == 1
