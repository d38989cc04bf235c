"""Journey (b) in headless Chromium, signed in through real SAML: an employee requests
privileged access from the portal, two approvers approve it on a prod account, the employee
gets CLI credentials under the grant, an admin revokes it, and the stale page is refused.
STS and IAM run on moto over HTTP; the IAM deny for the earlier session is checked too."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.models import AccessRequest, Grant
from federation.aws import iam, sts
from federation.mappings import apply_document, parse_document
from tests.aws import MotoServer
from tests.browser.conftest import BrowserIdp, assert_accessible, screenshot, sign_in
from tests.mapping_samples import PB_ADMIN, PB_CLOUD_ENG, mapping_yaml

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = mapping_yaml([PB_CLOUD_ENG, PB_ADMIN.replace("240", "120")])


@pytest.fixture
def people(browser_idp: BrowserIdp, settings: SettingsWrapper) -> BrowserIdp:
    apply_document(parse_document(TABLES), actor="setup", source="import", now=timezone.now())
    settings.ADMIN_GROUPS = ["fed-admins"]
    browser_idp.add("alice", "alice@corp.example", ["aws-pb-cloud-eng", "aws-pb-admin"])
    browser_idp.add("bob", "bob@corp.example", ["aws-pb-managers"])
    browser_idp.add("carol", "carol@corp.example", ["aws-pb-managers"])
    browser_idp.add("root", "root@corp.example", ["fed-admins"])
    return browser_idp


@pytest.fixture
def local_aws(settings: SettingsWrapper, aws: MotoServer) -> MotoServer:
    settings.STS_REGIONS = ["us-east-1"]
    settings.STS_ENDPOINTS = []
    settings.STS_BROKER_CHAINED = "false"
    sts.reset_clients()
    boto3.client("iam").create_role(
        RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    return aws


def approve_as(new_context: Callable[[], BrowserContext], site: str, who: str) -> Page:
    page = new_context().new_page()
    sign_in(page, site, who)
    expect(page.get_by_role("link", name="1 request waiting for your decision")).to_be_visible()
    page.get_by_role("link", name="Approvals 1 waiting").click()
    card = page.locator("article.request-card")
    expect(card).to_contain_text("INC-88 card processor failover")
    expect(card).to_contain_text("aws-pb-admin, aws-pb-cloud-eng")  # the requester's groups
    card.get_by_label("Comment").fill(f"{who}: ok for the incident")
    card.get_by_role("button", name="Approve").click()
    return page


def test_request_two_approvals_use_and_revoke_in_the_browser(
    people: BrowserIdp,
    site: str,
    local_aws: MotoServer,
    new_context: Callable[[], BrowserContext],
) -> None:
    alice = new_context().new_page()
    sign_in(alice, site, "alice")
    alice.get_by_role("link", name="Request access to pb-prod as admin").click()
    expect(alice.get_by_label("Account and role")).to_have_value("222222222222/admin")
    alice.get_by_label("Duration (minutes)").fill("60")
    alice.get_by_label("Justification").fill("INC-88 card processor failover")
    alice.get_by_label("Ticket (optional)").fill("INC-88")
    alice.get_by_role("button", name="Send request").click()
    expect(alice.get_by_role("status")).to_contain_text("sent to the approvers")
    expect(alice.locator("table")).to_contain_text("pending")
    assert_accessible(alice)
    screenshot(alice, "requester-requests")

    bob = approve_as(new_context, site, "bob")
    expect(bob.get_by_role("status")).to_contain_text("your approval is recorded; it is pending")
    carol = approve_as(new_context, site, "carol")
    expect(carol.get_by_role("status")).to_contain_text("it is approved")
    expect(carol.get_by_text("Nothing is waiting for your decision.")).to_be_visible()
    assert_accessible(carol)
    screenshot(carol, "approver-approvals")

    alice.goto(f"{site}/")
    cli = alice.get_by_role("button", name="Get CLI credentials for pb-prod as admin")
    cli.click()
    expect(alice.get_by_role("heading", name="CLI credentials for admin")).to_be_visible()
    alice.go_back()  # the portal as it was, with the grant still showing

    root = new_context().new_page()
    sign_in(root, site, "root")
    root.get_by_role("link", name="Approvals").click()
    grant = Grant.objects.get(request__state=AccessRequest.State.APPROVED)
    row = root.locator(f"tr[data-grant='{grant.pk}']")
    expect(row).to_contain_text("INC-88 card processor failover")  # what the grant was for
    expect(row).to_contain_text("ticket INC-88")
    root.get_by_label(f"Reason for revoking grant {grant.pk}").fill("incident closed")
    # Revoking asks first; saying no leaves the grant alone.
    questions: list[str] = []
    root.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    root.get_by_role("button", name=f"Revoke #{grant.pk}").click()
    expect(row).to_be_visible()
    assert questions and "alice@corp.example loses admin in pb-prod" in questions[0]
    grant.refresh_from_db()
    assert grant.state == Grant.State.ACTIVE
    root.once("dialog", lambda dialog: dialog.accept())
    root.get_by_role("button", name=f"Revoke #{grant.pk}").click()
    expect(root.get_by_role("status")).to_contain_text(f"Grant #{grant.pk} revoked")
    assert_accessible(root)
    screenshot(root, "admin-revoked-grant")

    # The stale page still offers the button: the click is refused, and the earlier session's
    # SourceIdentity is denied on the role in IAM.
    alice.get_by_role("button", name="Get CLI credentials for pb-prod as admin").click()
    expect(alice.get_by_role("heading", name="Session refused")).to_be_visible()
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED
    assert grant.revocation_applied_at is not None
    assert [r.source_identity for r in iam.list_revocations(grant.role_arn)] == [
        "alice@corp.example"
    ]
    alice.goto(f"{site}/")
    expect(alice.get_by_role("link", name="Request access to pb-prod as admin")).to_be_visible()
