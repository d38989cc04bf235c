"""Journeys of issue 20 in headless Chromium, signed in through real SAML: the requester reads
the approvers' comments and votes on /requests/ and ends their own grant early (asked first;
the IAM deny lands on moto); an admin reads a full page of the audit log without it widening;
``fedaccess login`` is confirmed on /device/ and the CLI's poll then receives the token."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import BrowserContext, expect

from access_requests.models import Grant
from federation.audit.chain import record_event
from federation.aws import iam
from federation.models import ApiToken
from tests.aws import MotoServer
from tests.browser.conftest import BrowserIdp, assert_accessible, screenshot, sign_in
from tests.browser.test_approval_journey import approve_as, local_aws, people

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["local_aws", "people"]  # fixtures shared with the approval journey


def test_requester_sees_comments_and_ends_the_grant_early(
    people: BrowserIdp,
    site: str,
    local_aws: MotoServer,
    new_context: Callable[[], BrowserContext],
) -> None:
    alice = new_context().new_page()
    sign_in(alice, site, "alice")
    alice.get_by_role("link", name="Request access to pb-prod as admin").click()
    alice.get_by_label("Duration (minutes)").fill("60")
    alice.get_by_label("Justification").fill("INC-88 card processor failover")
    alice.get_by_role("button", name="Send request").click()
    expect(alice.get_by_role("status")).to_contain_text("sent to the approvers")

    approve_as(new_context, site, "bob")
    alice.reload()
    row = alice.locator("tr[data-request]").first
    expect(row).to_contain_text("approved by bob@corp.example")
    expect(row).to_contain_text("“bob: ok for the incident”")
    expect(row).to_contain_text("1 of 2 approvals so far")

    approve_as(new_context, site, "carol")
    alice.reload()
    expect(row).to_contain_text("approved")
    expect(row).to_contain_text("“carol: ok for the incident”")
    grant = Grant.objects.get()
    end = alice.get_by_role("button", name=f"End grant {grant.pk} now")
    assert_accessible(alice)
    screenshot(alice, "requester-requests-with-comments")

    # Ending asks first; saying no keeps the grant.
    questions: list[str] = []
    alice.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    end.click()
    expect(end).to_be_visible()
    assert questions and "You lose admin in pb-prod" in questions[0]
    grant.refresh_from_db()
    assert grant.state == Grant.State.ACTIVE

    alice.once("dialog", lambda dialog: dialog.accept())
    end.click()
    expect(alice.get_by_role("status")).to_contain_text(f"Grant #{grant.pk} ended")
    expect(alice.locator("tr[data-request]").first).to_contain_text("you ended it")
    grant.refresh_from_db()
    assert (grant.state, grant.revoked_by.subject) == (Grant.State.REVOKED, "00u-alice")
    assert grant.revocation_applied_at is not None
    assert [r.source_identity for r in iam.list_revocations(grant.role_arn)] == [
        "alice@corp.example"
    ]
    alice.goto(f"{site}/")
    expect(alice.get_by_role("link", name="Request access to pb-prod as admin")).to_be_visible()


def test_a_full_page_of_the_audit_log_stays_within_the_window(
    people: BrowserIdp, site: str, new_context: Callable[[], BrowserContext]
) -> None:
    now = timezone.now()
    for n in range(60):
        record_event(
            "mappings.draft_proposed",
            actor=f"cli:deploy-bot-with-a-rather-long-name-{n}@build-runner.internal.example",
            target=f"arn:aws:iam::222222222222:role/{'R' * 200}{n}",  # one long word
            now=now,
            data={"n": n, "reason": "x" * 400},
        )
    root = new_context().new_page()
    sign_in(root, site, "root")
    root.goto(f"{site}/audit/")
    expect(root.locator("table.audit tbody tr")).to_have_count(50)
    width = root.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the audit page is {width} px wide"
    assert_accessible(root)
    screenshot(root, "admin-audit-log-full-page")


def test_the_cli_sign_in_code_is_confirmed_in_the_browser(
    people: BrowserIdp, site: str, new_context: Callable[[], BrowserContext]
) -> None:
    terminal = Client()
    started = terminal.post("/api/v1/device/start", {"client": "alice-laptop"}, "application/json")
    code = started.json()["user_code"]
    alice = new_context().new_page()
    sign_in(alice, site, "alice")
    alice.goto(f"{site}/device/")
    alice.get_by_label("The code your terminal shows").fill(code.lower().replace("-", " "))
    alice.get_by_role("button", name="Continue").click()
    expect(alice.get_by_text("from alice-laptop")).to_be_visible()
    assert_accessible(alice)
    screenshot(alice, "employee-device-login")
    alice.get_by_role("button", name="Approve").click()
    expect(alice.get_by_role("status")).to_contain_text(f"Approved: the terminal showing {code}")

    polled = terminal.post(
        "/api/v1/device/token", {"device_code": started.json()["device_code"]}, "application/json"
    )
    assert polled.status_code == 200
    assert ApiToken.objects.get().user.email == "alice@corp.example"
