"""Every persona's journey in headless Chromium, signed in through real SAML.

(a) an employee sees only their business unit, gets a console link and CLI credentials;
(c) an admin edits a mapping, sees the plan, a second admin approves, rollback restores it;
(d) an auditor filters the audit log and exports it.
The approval journey (b) lives in test_approval_journey.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import BrowserContext, expect
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import sts
from federation.mappings import apply_document, parse_document
from federation.models import AuditEvent, GroupMapping, MappingVersion, SessionIssuance
from tests.aws import MotoServer
from tests.browser.conftest import BrowserIdp, assert_accessible, screenshot, sign_in
from tests.mapping_samples import DW_CLOUD_ENG, PB_ADMIN, PB_CLOUD_ENG, ROLES, mapping_yaml

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = mapping_yaml(
    [PB_CLOUD_ENG, DW_CLOUD_ENG, PB_ADMIN.replace("240", "120")],
    roles=(*ROLES, "{name: observability, max_session_minutes: 60}"),
)


@pytest.fixture
def tables() -> None:
    apply_document(parse_document(TABLES), actor="setup", source="import", now=timezone.now())


@pytest.fixture
def people(browser_idp: BrowserIdp, settings: SettingsWrapper, tables: None) -> BrowserIdp:
    settings.ADMIN_GROUPS = ["fed-admins"]
    settings.AUDITOR_GROUPS = ["fed-auditors"]
    browser_idp.add("alice", "alice@corp.example", ["aws-pb-cloud-eng", "aws-pb-admin"])
    browser_idp.add("dora", "dora@corp.example", ["aws-dw-cloud-eng"])
    browser_idp.add("root", "root@corp.example", ["fed-admins"])
    browser_idp.add("second", "second@corp.example", ["fed-admins"])
    browser_idp.add("audrey", "audrey@corp.example", ["fed-auditors"])
    return browser_idp


@pytest.fixture
def console_stand_in(site: str, settings: SettingsWrapper, aws: MotoServer) -> str:
    """STS is moto over HTTP; AWS's federation endpoint is the local stand-in."""
    settings.DEMO_MODE = True  # the stand-in answers only in demo mode
    settings.ROOT_URLCONF = "tests.federation_stand_in_urls"
    settings.AWS_FEDERATION_URL = f"{site}/demo-federation/"
    settings.STS_REGIONS = ["us-east-1"]
    settings.STS_ENDPOINTS = []
    sts.reset_clients()
    return str(settings.AWS_FEDERATION_URL)


def test_employee_sees_own_business_unit_and_gets_console_and_cli(
    people: BrowserIdp,
    site: str,
    console_stand_in: str,
    new_context: Callable[[], BrowserContext],
) -> None:
    context = new_context()
    page = context.new_page()
    sign_in(page, site, "alice")

    expect(page.get_by_role("heading", name="My AWS access")).to_be_visible()
    expect(page.get_by_role("heading", name="Personal Banking (pb)")).to_be_visible()
    expect(page.get_by_text("dw-dev")).to_have_count(0)
    expect(page.get_by_role("link", name="Request access")).to_be_visible()  # eligible admin
    assert_accessible(page)
    screenshot(page, "employee-portal")

    page.get_by_role("button", name="Open the AWS console in pb-dev as cloud-eng").click()
    expect(page.get_by_text("You would now be in account")).to_be_visible()
    expect(page.get_by_text("111111111111", exact=True)).to_be_visible()
    screenshot(page, "employee-console-stand-in")

    page.goto(f"{site}/")
    page.get_by_role("button", name="Get CLI credentials for pb-prod as cloud-eng").click()
    expect(
        page.get_by_role("heading", name="CLI credentials for cloud-eng in 222222222222")
    ).to_be_visible()
    assert "AccessKeyId" in page.content()
    assert_accessible(page)
    # The session token is one long word: the page wraps it instead of growing sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page.get_by_role("button", name="Copy").nth(1).click()  # the PowerShell form
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith('$Env:AWS_ACCESS_KEY_ID="ASIA') and "AWS_SESSION_TOKEN" in copied
    screenshot(page, "employee-cli-credentials")


@pytest.fixture
def console_on_another_origin(console_stand_in: str, site: str, settings: SettingsWrapper) -> str:
    """The stand-in as production has it: on an origin other than the portal's (the same live
    server under its other loopback name)."""
    parts = urlsplit(site)
    other = "localhost" if parts.hostname != "localhost" else "127.0.0.1"
    origin = f"{parts.scheme}://{other}:{parts.port}"
    settings.AWS_FEDERATION_URL = f"{origin}/demo-federation/"
    return origin


def test_console_button_reaches_a_federation_endpoint_on_another_origin(
    people: BrowserIdp,
    site: str,
    console_on_another_origin: str,
    new_context: Callable[[], BrowserContext],
) -> None:
    page = new_context().new_page()
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    sign_in(page, site, "alice")

    page.get_by_role("button", name="Open the AWS console in pb-dev as cloud-eng").click()

    expect(page.get_by_text("You would now be in account")).to_be_visible()
    assert page.url.startswith(f"{console_on_another_origin}/demo-federation/?")
    assert not [text for text in blocked if "Content Security Policy" in text]
    assert SessionIssuance.objects.filter(account_id="111111111111").count() == 1


def test_portal_works_from_the_keyboard(
    people: BrowserIdp,
    site: str,
    console_stand_in: str,
    new_context: Callable[[], BrowserContext],
) -> None:
    page = new_context().new_page()
    sign_in(page, site, "alice")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    console = page.get_by_role("button", name="Open the AWS console in pb-dev as cloud-eng")
    for _ in range(20):  # tab through the page until the first Console button has focus
        page.keyboard.press("Tab")
        if console.evaluate("el => el === document.activeElement"):
            break
    expect(console).to_be_focused()
    outline = console.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"  # a visible focus ring
    page.keyboard.press("Enter")
    expect(page.get_by_text("You would now be in account")).to_be_visible()


def test_employee_cannot_reach_another_business_unit_by_editing_the_form(
    people: BrowserIdp,
    site: str,
    console_stand_in: str,
    new_context: Callable[[], BrowserContext],
) -> None:
    page = new_context().new_page()
    sign_in(page, site, "alice")
    # Tamper with the form in the page, as an attacker with devtools would.
    page.evaluate("document.querySelector('input[name=account]').value = '333333333333'")
    with page.expect_response(f"{site}/sessions/") as answer:
        page.locator("form[action='/sessions/'] button[value=console]").first.click()
    assert answer.value.status == 403
    expect(
        page.get_by_text("not entitled to the role cloud-eng in account 333333333333")
    ).to_be_visible()
    expect(page.get_by_text("You would now be in account")).to_have_count(0)
    assert not SessionIssuance.objects.filter(account_id="333333333333").exists()
    refused = AuditEvent.objects.get(event_type="issuance.refused")
    assert (refused.actor, refused.account_id, refused.data["reason"]) == (
        "alice@corp.example",
        "333333333333",
        "not_entitled",
    )


def test_admin_change_needs_a_second_admin_and_rolls_back(
    people: BrowserIdp, site: str, new_context: Callable[[], BrowserContext]
) -> None:
    root = new_context().new_page()
    sign_in(root, site, "root")
    root.get_by_role("link", name="Mappings", exact=True).click()
    assert_accessible(root)
    screenshot(root, "admin-mappings")
    root.get_by_role("link", name="Add mapping").click()
    root.get_by_label("Directory group").fill("aws-pb-sre")
    root.get_by_label("Logical role").select_option("admin")
    root.get_by_label("Business unit").select_option("pb")
    root.get_by_label("prod").check()
    root.get_by_label("Access").select_option("eligible")
    root.get_by_label("Max grant (minutes, eligible only)").fill("60")
    root.get_by_label("Reason for this change").fill("SRE on-call needs break-glass in prod")
    root.get_by_role("button", name="Show the plan").click()

    expect(root.get_by_role("heading", name="Plan against version 1")).to_be_visible()
    expect(root.get_by_text("a second administrator must approve it")).to_be_visible()
    expect(root.get_by_text("Waiting for another administrator to approve.")).to_be_visible()
    assert_accessible(root)
    screenshot(root, "admin-draft-plan")
    draft_url = root.url

    second = new_context().new_page()
    sign_in(second, site, "second")
    second.goto(draft_url)
    second.get_by_label("Comment").fill("approved for the on-call rota")
    second.get_by_role("button", name="Approve and apply").click()
    expect(second.get_by_text("Applied as mapping version 2.")).to_be_visible()
    assert GroupMapping.objects.filter(group="aws-pb-sre").exists()

    root.get_by_role("link", name="Mappings", exact=True).click()
    root.get_by_role("link", name="History").click()
    expect(root.get_by_role("link", name="v2")).to_be_visible()
    screenshot(root, "admin-versions")
    root.get_by_role("link", name="v1").click()
    root.get_by_label("Reason for this change").fill("undo: rota changed")
    root.get_by_role("button", name="Plan the rollback").click()
    expect(root.get_by_text("aws-pb-sre").first).to_be_visible()
    # Rolling back removes privileged access in prod: the second admin approves it too.
    second.goto(root.url)
    second.get_by_role("button", name="Approve and apply").click()
    expect(second.get_by_text("Applied as mapping version 3.")).to_be_visible()
    assert not GroupMapping.objects.filter(group="aws-pb-sre").exists()
    assert MappingVersion.objects.get(number=3).source == "ui"


def test_auditor_filters_and_exports_the_log_and_cannot_edit_mappings(
    people: BrowserIdp, site: str, new_context: Callable[[], BrowserContext]
) -> None:
    context = new_context()
    page = context.new_page()
    sign_in(page, site, "audrey")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_text("Hash chain verified up to event")).to_be_visible()
    page.get_by_label("Event type (prefix, e.g. signin.)").fill("signin.")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.audit tbody tr").first).to_contain_text("signin.success")
    expect(page.locator("table.audit")).not_to_contain_text("mappings.apply")
    assert_accessible(page)
    screenshot(page, "auditor-audit-log")

    with page.expect_download() as download:
        page.get_by_role("link", name="Export JSON Lines").click()
    lines = [json.loads(line) for line in download.value.path().read_text().splitlines()]
    assert lines and all(line["event_type"].startswith("signin.") for line in lines)
    assert all(len(line["hash"]) == 64 for line in lines)

    page.get_by_role("link", name="Access review").click()
    page.get_by_label("Account").select_option("222222222222")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_text("eligible via group aws-pb-admin").first).to_be_visible()
    screenshot(page, "auditor-access-review")

    response = page.goto(f"{site}/mappings/")
    assert response is not None and response.status == 403
    expect(page.get_by_role("link", name="Mappings", exact=True)).to_have_count(0)
