"""The /requests/ and /approvals/ pages through the Django client: thin views over the services."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access_requests.models import AccessRequest, Grant
from access_requests.services import workflow
from tests.access_requests.conftest import World, approved_request
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def file_via_page(client: Client, **overrides: str) -> Any:
    data = {
        "target": "111111111111/admin",
        "duration_minutes": "60",
        "justification": "CHG-7 rotate keys",
        "ticket": "CHG-7",
        **overrides,
    }
    return client.post("/requests/", data)


def test_pages_require_sign_in(client: Client) -> None:
    for url in ("/requests/", "/approvals/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_request_form_offers_only_eligible_targets_with_labels(
    client: Client, world: World
) -> None:
    client.force_login(world.requester)
    body = client.get("/requests/").content.decode()

    options = re.findall(r'<option value="([^"]+)"', body)
    assert sorted(options) == ["111111111111/admin", "222222222222/admin"]
    for field in ("id_target", "id_duration_minutes", "id_justification", "id_ticket"):
        assert f'<label for="{field}">' in body
    assert re.findall(r"<script(?![^>]*\bsrc=)", body) == []  # no inline script (CSP)


def test_request_form_stops_offering_a_target_with_a_pending_request(
    client: Client, world: World
) -> None:
    client.force_login(world.requester)
    assert file_via_page(client).status_code == 302

    body = client.get("/requests/").content.decode()

    assert re.findall(r'<option value="([^"]+)"', body) == ["222222222222/admin"]
    again = file_via_page(client)
    assert again.status_code == 400 and AccessRequest.objects.count() == 1  # not a choice now


def test_request_form_asks_for_at_least_30_minutes_and_says_why(
    client: Client, world: World
) -> None:
    client.force_login(world.requester)
    body = client.get("/requests/").content.decode()
    assert 'min="30"' in body and "until 15 minutes before the grant ends" in body

    assert file_via_page(client, duration_minutes="15").status_code == 400
    assert file_via_page(client, duration_minutes="29").status_code == 400
    assert not AccessRequest.objects.exists()
    with pytest.raises(workflow.DurationOutOfBounds, match="at least 30 minutes"):
        workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="CHG-7",
            duration=timedelta(minutes=20),
            now=timezone.now(),
        )


def test_filing_a_request_lists_it_and_mails_the_approvers(
    client: Client, world: World, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    client.force_login(world.requester)
    with django_capture_on_commit_callbacks(execute=True):
        response = file_via_page(client)

    assert response.status_code == 302
    request = AccessRequest.objects.get()
    assert (request.ticket, request.duration) == ("CHG-7", timedelta(hours=1))
    body = client.get("/requests/").content.decode()
    assert "CHG-7 rotate keys" in body and "pending" in body
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        [world.approver.email, world.second_approver.email]
    )
    assert "asks for admin in pb-dev" in mail.outbox[0].subject


def test_a_target_outside_my_eligibility_is_refused_by_the_form(
    client: Client, world: World
) -> None:
    client.force_login(world.requester)
    response = file_via_page(client, target="111111111111/cloud-eng")
    assert response.status_code == 400
    assert not AccessRequest.objects.exists()


def test_a_refusal_from_the_service_is_shown_on_the_form(client: Client, world: World) -> None:
    client.force_login(world.requester)
    response = file_via_page(client, duration_minutes="300")
    assert response.status_code == 400
    assert "The longest grant for this role is 240 minutes." in response.content.decode()


def test_requester_cancels_a_pending_request(client: Client, world: World) -> None:
    client.force_login(world.requester)
    file_via_page(client)
    request = AccessRequest.objects.get()

    response = client.post(f"/requests/{request.pk}/cancel/", follow=True)

    assert "cancelled" in response.content.decode()
    request.refresh_from_db()
    assert request.state == AccessRequest.State.CANCELLED


def test_approver_sees_context_and_approves_with_a_comment(client: Client, world: World) -> None:
    requester = Client()
    requester.force_login(world.requester)
    file_via_page(requester)
    request = AccessRequest.objects.get()
    client.force_login(world.approver)

    page = client.get("/approvals/").content.decode()
    assert "CHG-7 rotate keys" in page and "CHG-7" in page
    assert "aws-pb-admin, aws-pb-cloud-eng" in page  # the requester's groups
    assert '<label for="comment-' in page

    response = client.post(
        f"/approvals/{request.pk}/decide/", {"decision": "approve", "comment": "ok"}, follow=True
    )

    assert "approved" in response.content.decode()
    assert Grant.objects.filter(request=request).count() == 1
    assert "Nothing is waiting for your decision." in client.get("/approvals/").content.decode()


def test_requester_does_not_see_own_request_and_cannot_post_a_decision(
    client: Client, world: World
) -> None:
    world.requester.directory_groups = [*world.requester.directory_groups, "aws-pb-managers"]
    world.requester.save()
    client.force_login(world.requester)
    file_via_page(client)
    request = AccessRequest.objects.get()

    assert f'data-request="{request.pk}"' not in client.get("/approvals/").content.decode()
    response = client.post(f"/approvals/{request.pk}/decide/", {"decision": "approve"}, follow=True)

    assert "You cannot decide your own request." in response.content.decode()
    assert not Grant.objects.exists()


def test_second_click_on_a_decided_request_gets_a_clear_message(
    client: Client, world: World
) -> None:
    request = workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="x",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )
    workflow.decide_request(
        request, actor=world.second_approver, decision="approve", now=timezone.now()
    )
    client.force_login(world.approver)

    response = client.post(f"/approvals/{request.pk}/decide/", {"decision": "deny"}, follow=True)

    assert "is already approved; it can no longer be decided" in response.content.decode()


def test_approver_revokes_an_active_grant_from_the_page(client: Client, world: World) -> None:
    now = timezone.now()
    approved_request(world, now)
    grant = Grant.objects.get()
    client.force_login(world.second_approver)
    assert f'data-grant="{grant.pk}"' in client.get("/approvals/").content.decode()

    # No IAM here: the deny policy is owed (audited) and retried, the revocation stands.
    response = client.post(f"/approvals/grants/{grant.pk}/revoke/", {"reason": "done"}, follow=True)

    assert "revoked" in response.content.decode()
    grant.refresh_from_db()
    assert grant.state == Grant.State.REVOKED


def test_active_grant_rows_say_what_the_grant_was_for(client: Client, world: World) -> None:
    now = timezone.now()
    approved_request(
        world,
        now,
        justification="rotate the <b>KMS</b> keys",
        ticket="CHG-4711",
        duration=timedelta(hours=2),
    )
    client.force_login(world.second_approver)

    body = client.get("/approvals/").content.decode()

    row = body[body.index('data-grant="') : body.index("</tr>", body.index('data-grant="'))]
    assert "rotate the &lt;b&gt;KMS&lt;/b&gt; keys" in row and "ticket CHG-4711" in row
    assert "left)" in row


def _nav(body: str) -> str:
    return body[body.index('<nav aria-label="Main">') : body.index("</nav>")]


def test_navigation_shows_only_the_sections_a_person_can_use(
    client: Client, world: World, settings: Any
) -> None:
    settings.AUDITOR_GROUPS = ["fed-auditors"]
    auditor = UserFactory(username="otto", directory_groups=["fed-auditors"])
    client.force_login(auditor)
    nav = _nav(client.get("/").content.decode())
    assert 'href="/audit/"' in nav
    assert 'href="/requests/"' not in nav and 'href="/approvals/"' not in nav

    client.force_login(world.requester)  # eligible for admin, approves nothing
    nav = _nav(client.get("/").content.decode())
    assert 'href="/requests/"' in nav and 'href="/approvals/"' not in nav

    client.force_login(world.approver)  # approves for pb, eligible for nothing
    nav = _nav(client.get("/").content.decode())
    assert 'href="/approvals/"' in nav and 'href="/requests/"' not in nav
    assert "waiting" not in nav


def test_approvers_see_how_many_requests_wait_for_them(client: Client, world: World) -> None:
    client.force_login(world.requester)
    assert file_via_page(client).status_code == 302
    assert file_via_page(client, target="222222222222/admin").status_code == 302

    client.force_login(world.approver)
    body = client.get("/").content.decode()
    assert '<span class="badge">2<span class="visually-hidden"> waiting</span>' in _nav(body)
    assert "2 requests waiting for your decision" in body
    client.post(f"/approvals/{AccessRequest.objects.first().pk}/decide/", {"decision": "approve"})
    assert '<span class="badge">1<' in _nav(client.get("/approvals/").content.decode())
    client.force_login(world.outsider)  # another unit's approver: nothing waits for them
    assert "badge" not in _nav(client.get("/").content.decode())


def test_deny_and_revoke_buttons_ask_before_they_act(client: Client, world: World) -> None:
    now = timezone.now()
    workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="x",
        duration=timedelta(hours=1),
        now=now,
    )
    client.force_login(world.approver)
    body = client.get("/approvals/").content.decode()
    assert '<script src="/static/js/confirm.js" defer></script>' in body
    deny = re.search(r'<button[^>]*value="deny"[^>]*>', body)
    assert deny and 'data-confirm="Deny request #' in deny.group(0)
    approve = re.search(r'<button[^>]*value="approve"[^>]*>', body)
    assert approve and "data-confirm" not in approve.group(0)


def test_outsider_sees_nothing_to_decide_or_revoke(client: Client, world: World) -> None:
    now = timezone.now()
    request = workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="x",
        duration=timedelta(hours=1),
        now=now,
    )
    client.force_login(world.outsider)
    page = client.get("/approvals/").content.decode()
    assert f'data-request="{request.pk}"' not in page
    assert client.post("/approvals/999999/decide/", {"decision": "approve"}).status_code == 404


def pending_with_a_vote_and_history(world: World, now: datetime) -> AccessRequest:
    """A prod request one approver has voted on, from a requester with one earlier request."""
    requester = UserFactory(directory_groups=["aws-pb-admin"])
    earlier = workflow.submit_request(
        requester,
        account_id="111111111111",
        role="admin",
        justification="x",
        duration=timedelta(hours=1),
        now=now,
    )
    workflow.cancel_request(earlier, actor=requester, now=now)
    request = workflow.submit_request(
        requester,
        account_id="222222222222",
        role="admin",
        justification="y",
        duration=timedelta(hours=1),
        now=now,
    )
    workflow.decide_request(request, actor=world.second_approver, decision="approve", now=now)
    return request


def test_approvals_page_queries_do_not_grow_with_pending_requests(
    client: Client, world: World, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    now = timezone.now()
    first = pending_with_a_vote_and_history(world, now)
    client.force_login(world.approver)
    with CaptureQueriesContext(connection) as one_request:
        page = client.get("/approvals/").content.decode()
    assert f'data-request="{first.pk}"' in page
    assert f"{world.second_approver.label} approve" in page  # the vote, with its approver
    assert page.count("admin in pb-dev: cancelled") == 1  # the requester's history

    more = [pending_with_a_vote_and_history(world, now) for _ in range(4)]
    with django_assert_max_num_queries(len(one_request.captured_queries)):
        page = client.get("/approvals/").content.decode()

    assert all(f'data-request="{r.pk}"' in page for r in [first, *more])
    assert page.count(f"{world.second_approver.label} approve") == 5
    assert page.count("admin in pb-dev: cancelled") == 5


def test_admin_sees_requests_nobody_can_approve(client: Client, world: World) -> None:
    business_unit = world.dev.business_unit
    business_unit.approver_groups = []
    business_unit.save()
    request = workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="x",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )
    client.force_login(UserFactory(directory_groups=["aws-admins"]))
    with override_settings(ADMIN_GROUPS=["aws-admins"]):
        page = client.get("/approvals/").content.decode()
    assert f'data-unapprovable="{request.pk}"' in page


def test_decisions_need_post_and_csrf(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.approver)
    assert client.get("/approvals/1/decide/").status_code == 405
    assert client.post("/approvals/1/decide/", {"decision": "approve"}).status_code == 403


def test_admins_are_mailed_about_a_request_nobody_can_approve(
    world: World, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    business_unit = world.dev.business_unit
    business_unit.approver_groups = []
    business_unit.save()
    admin = UserFactory(directory_groups=["aws-admins"])
    with (
        override_settings(ADMIN_GROUPS=["aws-admins"]),
        django_capture_on_commit_callbacks(execute=True),
    ):
        workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="x",
            duration=timedelta(hours=1),
            now=timezone.now(),
        )
    (message,) = mail.outbox
    assert message.to == [admin.email]
    assert "fewer people than required" in message.body


def test_a_link_can_preselect_the_account_and_role(client: Client, world: World) -> None:
    client.force_login(world.requester)
    body = client.get("/requests/?target=222222222222/admin").content.decode()
    assert '<option value="222222222222/admin" selected>' in body


def test_portal_links_an_eligible_row_to_its_preselected_request_form(
    client: Client, world: World
) -> None:
    client.force_login(world.requester)
    portal = client.get("/").content.decode()
    assert 'href="/requests/?target=222222222222/admin"' in portal
    form = client.get("/requests/?target=222222222222/admin").content.decode()
    assert '<option value="222222222222/admin" selected>' in form
