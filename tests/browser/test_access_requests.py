"""Browser journey (headless Debian Chromium through playwright): a requester files a request on
/requests/, an approver approves it on /approvals/, the requester sees the active grant."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from access_requests.models import Grant
from federation.models import User
from tests.access_requests.conftest import build_world

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No background traffic: the machine's network is closed and the page is on loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes
    # here are still synchronous (playwright's documented set-up for Django).
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as p:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


def page_as(browser: Any, user: User, base_url: str) -> Any:
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=base_url)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": base_url,
            }
        ]
    )
    return context.new_page()


def test_file_approve_and_see_the_grant_in_a_browser(browser: Any, live_server: Any) -> None:
    world = build_world()
    requester = page_as(browser, world.requester, live_server.url)

    requester.goto("/requests/")
    requester.get_by_label("Account and role").select_option("111111111111/admin")
    requester.get_by_label("Duration (minutes)").fill("45")
    requester.get_by_label("Justification").fill("INC-77 queue backlog")
    requester.get_by_label("Ticket (optional)").fill("INC-77")
    requester.get_by_role("button", name="Send request").click()
    requester.wait_for_url("**/requests/")
    assert "sent to the approvers" in requester.locator(".messages").inner_text()
    assert "pending" in requester.locator("table").inner_text()

    approver = page_as(browser, world.approver, live_server.url)
    approver.goto("/approvals/")
    card = approver.locator("article.request-card")
    assert "INC-77 queue backlog" in card.inner_text()
    card.get_by_label("Comment").fill("looks right")
    card.get_by_role("button", name="Approve").click()
    approver.wait_for_url("**/approvals/")
    assert "it is approved" in approver.locator(".messages").inner_text()

    requester.goto("/requests/")
    assert "grant active until" in requester.locator("table").inner_text()
    assert Grant.objects.filter(user=world.requester, state="active").count() == 1
