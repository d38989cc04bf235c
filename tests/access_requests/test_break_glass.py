"""Break-glass (SPEC §4): a grant at once with a justification, limited per person, announced
in its own transaction, reviewed by someone else, flagged on /audit/ until then."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.models import AccessRequest, Grant, OutboxEffect
from access_requests.refusals import (
    AlreadyGranted,
    AlreadyReviewed,
    BreakGlassLimitReached,
    DurationOutOfBounds,
    JustificationRequired,
    NotBreakGlass,
    RequestNotFound,
    SelfReviewRefused,
)
from access_requests.services.break_glass import activate_break_glass, review_break_glass
from federation.entitlements.resolve import find_entitlement
from federation.models import Access, AuditEvent, EntitlementAccess, GroupMapping, Person
from tests.access_requests.conftest import NOW, World
from tests.factories import GroupMappingFactory, IdentityProviderFactory, UserFactory
from tests.metrics import scrape

pytestmark = pytest.mark.django_db


@pytest.fixture
def glass(world: World, settings: SettingsWrapper) -> GroupMapping:
    """aws-pb-breakglass may take admin in pb's prod account for at most an hour."""
    settings.BREAK_GLASS_NOTIFY = ["security@corp.example"]
    settings.ADMIN_GROUPS = ["aws-admins"]
    world.requester.directory_groups = [*world.requester.directory_groups, "aws-pb-breakglass"]
    world.requester.save()
    for who in (world.approver, world.second_approver):
        who.email = f"{who.username}@corp.example"
        who.save()
    return GroupMappingFactory(
        group="aws-pb-breakglass",
        role=world.admin_role,
        business_unit=world.prod.business_unit,
        environments=["prod"],
        access=Access.BREAK_GLASS,
        max_grant=timedelta(hours=1),
    )


def _activate(world: World, **overrides: Any) -> Grant:
    arguments: dict[str, Any] = {
        "account_id": "222222222222",
        "role": "admin",
        "justification": "INC-9: payments down, approvers unreachable",
        "now": NOW,
        "ip": "192.0.2.7",
    }
    arguments.update(overrides)
    user = arguments.pop("user", world.requester)
    return activate_break_glass(user, **arguments)


def test_a_member_gets_the_grant_at_once_without_approval(
    world: World, glass: GroupMapping
) -> None:
    before = find_entitlement(
        world.requester.directory_groups,
        "222222222222",
        "admin",
        now=NOW,
        user_id=world.requester.pk,
    )
    assert before is not None and before.break_glass_max == timedelta(hours=1)
    assert before.access == EntitlementAccess.ELIGIBLE  # also eligible through aws-pb-admin

    grant = _activate(world)

    assert grant.break_glass and grant.state == Grant.State.ACTIVE
    assert grant.ends_at == NOW + timedelta(hours=1)
    activation = grant.request
    assert activation.break_glass and activation.state == AccessRequest.State.APPROVED
    assert activation.mapping == glass and not activation.approvals.exists()
    after = find_entitlement(
        world.requester.directory_groups,
        "222222222222",
        "admin",
        now=NOW + timedelta(minutes=1),
        user_id=world.requester.pk,
    )
    assert after is not None and after.access == EntitlementAccess.GRANT and after.break_glass
    event = AuditEvent.objects.get(event_type="break_glass.activated")
    assert event.data["justification"].startswith("INC-9")
    assert event.data["grant_id"] == grant.pk and event.ip == "192.0.2.7"


def test_an_activation_counts_on_metrics_when_it_commits(
    world: World, glass: GroupMapping, django_capture_on_commit_callbacks: Any
) -> None:
    series = {"business_unit": "pb", "environment": "prod"}
    before = scrape().value("fedaccess_break_glass_activations_total", **series)
    with django_capture_on_commit_callbacks(execute=True):
        _activate(world)
    after = scrape().value("fedaccess_break_glass_activations_total", **series)
    assert after == before + 1


def test_the_notifications_are_owed_in_the_activations_own_transaction(
    world: World, glass: GroupMapping, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        grant = _activate(world)

    owed = OutboxEffect.objects.filter(args__0=grant.request_id)
    assert sorted(e.task for e in owed) == [
        "access_requests.tasks.post_break_glass_webhooks",
        "access_requests.tasks.send_request_email",
    ]
    # Eager tasks (no broker here): the approvers and the security contact got mail, never
    # the person who broke the glass.
    to = sorted(m.to[0] for m in mail.outbox)
    assert to == ["anna@corp.example", "bob@corp.example", "security@corp.example"]
    assert mail.outbox[0].subject.startswith(f"BREAK-GLASS #{grant.request_id}")
    assert "without approval" in mail.outbox[0].body


def test_a_break_glass_only_member_sees_no_request_form_but_may_activate(
    world: World, glass: GroupMapping
) -> None:
    only = UserFactory(username="gus", directory_groups=["aws-pb-breakglass"])
    entitlement = find_entitlement(
        only.directory_groups, "222222222222", "admin", now=NOW, user_id=only.pk
    )
    assert entitlement is not None and entitlement.access == EntitlementAccess.BREAK_GLASS
    assert not entitlement.usable

    grant = _activate(world, user=only)

    assert grant.user == only


@pytest.mark.parametrize("justification", ["", "   \n "])
def test_no_justification_is_refused_and_audited(
    world: World, glass: GroupMapping, justification: str
) -> None:
    with pytest.raises(JustificationRequired, match="justification"):
        _activate(world, justification=justification)
    assert not Grant.objects.exists()
    event = AuditEvent.objects.get(event_type="break_glass.refused")
    assert event.data["reason"] == "justification_required"


def test_people_outside_a_break_glass_row_are_refused(world: World, glass: GroupMapping) -> None:
    with pytest.raises(NotBreakGlass):
        _activate(world, user=world.approver)
    with pytest.raises(NotBreakGlass):
        _activate(world, account_id="111111111111")  # the row is prod only
    with pytest.raises(NotBreakGlass):
        _activate(world, account_id="999999999999")
    assert not Grant.objects.exists()


def test_standing_access_or_a_live_grant_leaves_nothing_to_break(
    world: World, glass: GroupMapping
) -> None:
    _activate(world)
    with pytest.raises(AlreadyGranted):
        _activate(world, now=NOW + timedelta(minutes=5))


@pytest.mark.parametrize("minutes", [29, 61])
def test_durations_outside_the_rows_bounds_are_refused(
    world: World, glass: GroupMapping, minutes: int
) -> None:
    with pytest.raises(DurationOutOfBounds):
        _activate(world, duration=timedelta(minutes=minutes))


def test_activations_past_the_per_person_limit_are_refused_across_identities(
    world: World, glass: GroupMapping, settings: SettingsWrapper
) -> None:
    settings.BREAK_GLASS_MAX_ACTIVATIONS = 1
    settings.BREAK_GLASS_WINDOW = timedelta(hours=24)
    person = Person.objects.create()
    world.requester.person = person
    world.requester.save()
    twin = UserFactory(
        username="rita-oidc",
        idp=IdentityProviderFactory(slug="corp-oidc", protocol="oidc"),
        person=person,
        directory_groups=["aws-pb-breakglass"],
    )
    _activate(world, duration=timedelta(minutes=30))

    later = NOW + timedelta(hours=2)  # the first grant has ended
    with pytest.raises(BreakGlassLimitReached) as refused:
        _activate(world, user=twin, now=later)
    assert refused.value.status == 429
    assert Grant.objects.count() == 1
    event = AuditEvent.objects.filter(event_type="break_glass.refused").get()
    assert event.data["reason"] == "break_glass_limit"
    # Outside the window the person may break glass again.
    assert _activate(world, user=twin, now=NOW + timedelta(hours=25)).break_glass


# --- review -------------------------------------------------------------------------------


def test_an_approver_reviews_it_once(world: World, glass: GroupMapping) -> None:
    grant = _activate(world)

    reviewed = review_break_glass(
        grant.request_id, actor=world.approver, comment="checked INC-9", now=NOW
    )

    assert reviewed.reviewed_by == world.approver and reviewed.reviewed_at == NOW
    event = AuditEvent.objects.get(event_type="break_glass.reviewed")
    assert event.data["comment"] == "checked INC-9"
    with pytest.raises(AlreadyReviewed):
        review_break_glass(grant.request_id, actor=world.second_approver, now=NOW)


def test_the_user_cannot_review_their_own_break_glass_through_any_identity(
    world: World, glass: GroupMapping
) -> None:
    world.requester.directory_groups = [*world.requester.directory_groups, "aws-pb-managers"]
    world.requester.email = "rita@corp.example"
    world.requester.save()
    grant = _activate(world)
    twin = UserFactory(
        username="rita-2",
        email="rita@corp.example",
        idp=IdentityProviderFactory(slug="other"),
        directory_groups=["aws-pb-managers"],
    )

    for who in (world.requester, twin):
        with pytest.raises(SelfReviewRefused):
            review_break_glass(grant.request_id, actor=who, now=NOW)
    assert AccessRequest.objects.get(pk=grant.request_id).reviewed_at is None
    assert AuditEvent.objects.filter(event_type="break_glass.review_refused").count() == 2


def test_outsiders_and_ordinary_requests_are_not_found(world: World, glass: GroupMapping) -> None:
    grant = _activate(world)
    with pytest.raises(RequestNotFound):
        review_break_glass(grant.request_id, actor=world.outsider, now=NOW)
    with pytest.raises(RequestNotFound):
        review_break_glass(123456, actor=world.approver, now=NOW)


def test_a_member_of_the_unit_who_is_no_approver_cannot_review(
    world: World, glass: GroupMapping
) -> None:
    grant = _activate(world)
    colleague = UserFactory(username="carl", directory_groups=["aws-pb-breakglass"])
    # Visible to nobody but approvers, admins and the user: the colleague is told nothing.
    with pytest.raises(RequestNotFound):
        review_break_glass(grant.request_id, actor=colleague, now=NOW)
    admin = UserFactory(username="ada", directory_groups=["aws-admins"])
    assert review_break_glass(grant.request_id, actor=admin, now=NOW).reviewed_by == admin


def test_the_database_refuses_a_self_review_written_around_the_service(
    world: World, glass: GroupMapping
) -> None:
    from django.db import IntegrityError, transaction

    grant = _activate(world)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccessRequest.objects.filter(pk=grant.request_id).update(
            reviewed_by=world.requester, reviewed_at=NOW
        )


# --- pages --------------------------------------------------------------------------------


def test_one_click_on_the_portal_breaks_the_glass(world: World, glass: GroupMapping) -> None:
    client = Client()
    client.force_login(world.requester)
    portal = client.get("/")
    assert b'action="/break-glass/"' in portal.content

    answer = client.post(
        "/break-glass/",
        {"account": "222222222222", "role": "admin", "justification": "INC-9 payments down"},
    )

    assert answer.status_code == 302 and answer["Location"] == "/"
    assert Grant.objects.get().break_glass
    refused = client.post(
        "/break-glass/", {"account": "222222222222", "role": "admin", "justification": ""}
    )
    assert refused.status_code == 400 and b"justification" in refused.content


def test_approvals_list_it_for_review_and_audit_flags_it_until_reviewed(
    world: World, glass: GroupMapping, settings: SettingsWrapper
) -> None:
    settings.AUDITOR_GROUPS = ["aws-auditors"]
    grant = _activate(world)
    approver, user, auditor = Client(), Client(), Client()
    approver.force_login(world.approver)
    user.force_login(world.requester)
    auditor.force_login(UserFactory(username="aud", directory_groups=["aws-auditors"]))

    page = approver.get("/approvals/").content.decode()
    assert f'data-break-glass="{grant.request_id}"' in page
    # Counted with the requests waiting for the approver, never for the user.
    assert "1 break-glass activation to review" in approver.get("/").content.decode()
    assert "to review" not in user.get("/").content.decode()
    assert f"Mark break-glass #{grant.request_id} reviewed" in page
    own = user.get("/approvals/").content.decode()
    assert "Someone else must review" in own and "Mark break-glass" not in own
    audit = auditor.get("/audit/").content.decode()
    assert f'data-unreviewed-break-glass="{grant.request_id}"' in audit

    reviewed = approver.post(
        f"/approvals/break-glass/{grant.request_id}/review/", {"comment": "fine"}
    )
    assert reviewed.status_code == 302
    assert "data-unreviewed-break-glass" not in auditor.get("/audit/").content.decode()
    assert user.post(f"/approvals/break-glass/{grant.request_id}/review/").status_code == 302
    assert AccessRequest.objects.get(pk=grant.request_id).reviewed_by == world.approver


def test_the_api_activates_and_refuses_clearly(world: World, glass: GroupMapping) -> None:
    from django.utils import timezone

    from federation.issuance.tokens import create_api_token

    world.requester.last_login = timezone.now()  # tokens stop with the person's last sign-in
    world.requester.save()
    token = create_api_token(
        world.requester, name="cli", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def post(body: dict[str, Any]) -> Any:
        return client.post("/api/v1/break-glass", body, content_type="application/json")

    missing = post({"account": "222222222222", "role": "admin"})
    assert missing.status_code == 400 and missing.json()["error"] == "justification_required"
    unknown = post({"account": "222222222222", "role": "admin", "why": "x"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_request"
    done = post({"account": "222222222222", "role": "admin", "justification": "INC-9"})
    assert done.status_code == 201, done.content
    assert done.json()["grant_id"] == Grant.objects.get().pk


def test_sessions_need_the_activation_and_then_carry_the_break_glass_tag(
    world: World, glass: GroupMapping, broker: Any
) -> None:
    from django.utils import timezone

    from federation.issuance.service import GrantRequired, issue_session

    only = UserFactory(
        username="gus", email="gus@corp.example", directory_groups=["aws-pb-breakglass"]
    )

    def issue() -> Any:
        return issue_session(
            only,
            account_id="222222222222",
            role="admin",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )

    with pytest.raises(GrantRequired, match="break-glass activation"):
        issue()
    _activate(world, user=only, now=timezone.now())
    broker.start_recording()

    issue()

    [sent] = broker.received("AssumeRole")
    tags = {
        sent[f"Tags.member.{n}.Key"]: sent[f"Tags.member.{n}.Value"]
        for n in range(1, 20)
        if f"Tags.member.{n}.Key" in sent
    }
    assert tags["BreakGlass"] == "true"
    assert tags["AccessRequest"] == str(Grant.objects.get().request_id)
    event = AuditEvent.objects.get(event_type="issuance.issued")
    assert event.data["break_glass"] is True


def test_break_glass_skips_approval_not_the_mfa_step_up(world: World, glass: GroupMapping) -> None:
    from django.utils import timezone

    from federation.issuance.service import issue_session
    from federation.stepup.rules import StepUpRequired

    world.admin_role.require_mfa = True
    world.admin_role.save()
    only = UserFactory(
        username="gus", email="gus@corp.example", directory_groups=["aws-pb-breakglass"]
    )
    _activate(world, user=only, now=timezone.now())
    with pytest.raises(StepUpRequired):
        issue_session(
            only,
            account_id="222222222222",
            role="admin",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
