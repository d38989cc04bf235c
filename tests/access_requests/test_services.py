"""The request workflow's rules, through the services (SPEC §4 Requests, SECURITY.md §5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from access_requests import approvers, queries, refusals
from access_requests.models import AccessRequest, Approval, Grant
from access_requests.services import grants, workflow
from federation.audit.chain import verify_chain
from federation.entitlements import resolve as entitlements
from federation.models import AuditEvent, User
from federation.refusals import Refused
from tests.access_requests.conftest import NOW, World, usable_access, usable_entitlement
from tests.factories import GroupMappingFactory, LogicalRoleFactory, UserFactory

pytestmark = pytest.mark.django_db


def submit(world: World, *, account: str = "111111111111", minutes: int = 60) -> AccessRequest:
    return workflow.submit_request(
        world.requester,
        account_id=account,
        role="admin",
        justification="INC-42: database failover",
        duration=timedelta(minutes=minutes),
        ticket="INC-42",
        now=NOW,
    )


def approve(request: AccessRequest, approver: User, *, minutes: int = 1) -> AccessRequest:
    return workflow.decide_request(
        request, actor=approver, decision="approve", now=NOW + timedelta(minutes=minutes)
    )


def events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("seq"))


# --- Submitting ---------------------------------------------------------------------------


def test_eligible_user_files_a_pending_request_that_is_audited(world: World) -> None:
    request = submit(world)

    assert request.state == AccessRequest.State.PENDING
    assert request.mapping == world.eligible
    assert request.decide_by > NOW
    assert not request.unapprovable
    (event,) = events("access_request.submitted")
    assert event.data["justification"] == "INC-42: database failover"
    assert event.data["possible_approvers"] == 2
    assert event.data["after"] == {"state": "pending"}


def test_request_for_a_standing_only_role_is_refused(world: World) -> None:
    with pytest.raises(refusals.NotEligible, match="standing"):
        workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="cloud-eng",
            justification="why not",
            duration=timedelta(hours=1),
            now=NOW,
        )
    assert not AccessRequest.objects.exists()
    assert events("access_request.refused")[0].data["reason"] == "not_eligible"


def test_request_for_an_unmapped_role_or_foreign_account_is_refused(world: World) -> None:
    LogicalRoleFactory(name="security")
    with pytest.raises(refusals.NotEligible):
        workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="security",
            justification="curious",
            duration=timedelta(hours=1),
            now=NOW,
        )
    with pytest.raises(refusals.NotEligible):
        workflow.submit_request(
            world.outsider,
            account_id="111111111111",
            role="admin",
            justification="curious",
            duration=timedelta(hours=1),
            now=NOW,
        )
    assert not AccessRequest.objects.exists()


def test_duration_over_the_mapping_cap_is_refused(world: World) -> None:
    with pytest.raises(refusals.DurationOutOfBounds, match="240 minutes"):
        submit(world, minutes=241)
    with pytest.raises(refusals.DurationOutOfBounds, match="at least 15"):
        submit(world, minutes=10)
    assert submit(world, minutes=240).duration == timedelta(hours=4)


def test_justification_is_required(world: World) -> None:
    with pytest.raises(refusals.JustificationRequired):
        workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="   ",
            duration=timedelta(hours=1),
            now=NOW,
        )


def test_a_second_pending_request_for_the_same_target_is_refused(world: World) -> None:
    submit(world)
    with pytest.raises(refusals.DuplicateRequest):
        submit(world)
    assert AccessRequest.objects.count() == 1


def test_request_nobody_can_approve_is_flagged_and_shown_to_admins(world: World) -> None:
    business_unit = world.dev.business_unit
    business_unit.approver_groups = []
    business_unit.save()

    request = submit(world)

    assert request.unapprovable
    admin = UserFactory(directory_groups=["aws-admins"])
    with override_settings(ADMIN_GROUPS=["aws-admins"]):
        assert queries.list_unapprovable(admin) == [request]
        assert queries.list_unapprovable(world.approver) == []


def test_prod_request_with_fewer_approvers_than_its_threshold_is_flagged(world: World) -> None:
    world.second_approver.directory_groups = []
    world.second_approver.save()
    assert submit(world, account="222222222222").unapprovable


def test_eligible_row_approver_groups_add_approvers_for_that_row(world: World) -> None:
    world.eligible.approver_groups = ["aws-pb-dba-leads"]
    world.eligible.save()
    lead = UserFactory(directory_groups=["aws-pb-dba-leads"])
    request = submit(world)

    assert lead in approvers.list_approvers(request)
    approve(request, lead)
    assert Grant.objects.get(request=request).user == world.requester


# --- Deciding -----------------------------------------------------------------------------


def test_one_approval_on_dev_grants_time_bound_access_used_through_entitlements(
    world: World,
) -> None:
    request = submit(world)
    assert usable_access(world.requester, "111111111111", at=NOW) == "eligible"

    approved = approve(request, world.approver, minutes=5)

    assert approved.state == AccessRequest.State.APPROVED
    grant = Grant.objects.get(request=request)
    assert grant.starts_at == NOW + timedelta(minutes=5)
    assert grant.ends_at == NOW + timedelta(minutes=65)
    assert grant.role_arn == "arn:aws:iam::111111111111:role/admin"
    assert grant.source_identity == world.requester.email
    found = usable_entitlement(world.requester, "111111111111", at=NOW + timedelta(minutes=10))
    assert found is not None and found.access == "grant"
    assert found.request_id == request.pk
    assert len(events("grant.granted")) == 1
    assert events("access_request.approved")[0].data["before"] == {"state": "pending"}


def test_requester_cannot_approve_own_request(world: World) -> None:
    world.requester.directory_groups = [*world.requester.directory_groups, "aws-pb-managers"]
    world.requester.save()
    request = submit(world)

    with pytest.raises(refusals.SelfApprovalRefused):
        approve(request, world.requester)

    assert not Approval.objects.exists()
    assert events("access_request.decision_refused")[0].data["reason"] == "self_approval"
    assert world.requester not in approvers.list_approvers(request)


def test_identity_is_the_idp_subject_not_the_email(world: World) -> None:
    # Someone else at the same IdP who happens to share the address (a recycled mailbox) is a
    # different person: only the subject tells them apart.
    namesake = UserFactory(
        email=world.requester.email, idp=world.requester.idp, directory_groups=["aws-pb-managers"]
    )
    request = submit(world)
    assert not approvers.same_person(world.requester, namesake)
    # Local accounts have no IdP identity: their empty subjects never make them one person.
    assert not approvers.same_person(
        UserFactory(idp=None, subject=""), UserFactory(idp=None, subject="")
    )
    assert approve(request, namesake).state == AccessRequest.State.APPROVED


def test_non_approver_cannot_decide(world: World) -> None:
    request = submit(world)
    # Another unit's approver is answered as if the request did not exist (issue 12 item 9).
    with pytest.raises(refusals.RequestNotFound):
        approve(request, world.outsider)
    # An admin sees every request, so is told why: not an approver of this one.
    with override_settings(ADMIN_GROUPS=["fed-admins"]), pytest.raises(refusals.NotAnApprover):
        approve(request, UserFactory(directory_groups=["fed-admins"]))
    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING


def test_approver_who_lost_the_group_since_is_refused(world: World) -> None:
    request = submit(world)
    stale = world.approver  # the object still says "manager", as a long-lived session would
    User.objects.filter(pk=stale.pk).update(directory_groups=["aws-pb-cloud-eng"])

    # Out of the group is out of reach: the same answer as for an unknown id.
    with pytest.raises(refusals.RequestNotFound):
        approve(request, stale)
    assert not Grant.objects.exists()


def test_prod_needs_two_distinct_approvers(world: World) -> None:
    request = submit(world, account="222222222222")

    assert approve(request, world.approver).state == AccessRequest.State.PENDING
    with pytest.raises(refusals.AlreadyDecided):
        approve(request, world.approver, minutes=2)
    assert not Grant.objects.exists()
    assert approve(request, world.second_approver, minutes=3).state == "approved"

    assert Grant.objects.filter(request=request).count() == 1
    assert events("access_request.approval_recorded")[0].data["approvals"] == 1


def test_one_deny_ends_the_request(world: World) -> None:
    request = submit(world, account="222222222222")
    approve(request, world.approver)

    denied = workflow.decide_request(
        request, actor=world.second_approver, decision="deny", comment="not now", now=NOW
    )

    assert denied.state == AccessRequest.State.DENIED
    assert not Grant.objects.exists()
    assert events("access_request.denied")[0].data["comment"] == "not now"


DECISION_FOR = {"approved": "approve", "denied": "deny"}


@pytest.mark.parametrize("end_state", ["approved", "denied", "cancelled"])
def test_decision_on_a_request_no_longer_pending_is_refused(world: World, end_state: str) -> None:
    request = submit(world)
    if end_state == "cancelled":
        workflow.cancel_request(request, actor=world.requester, now=NOW)
    else:
        workflow.decide_request(
            request, actor=world.approver, decision=DECISION_FOR[end_state], now=NOW
        )

    with pytest.raises(refusals.RequestNotPending, match=f"already {end_state}"):
        approve(request, world.second_approver)
    assert Grant.objects.count() == (1 if end_state == "approved" else 0)


def test_decision_after_the_deadline_is_refused(world: World) -> None:
    request = submit(world)
    with pytest.raises(refusals.RequestNotPending, match="not decided in time"):
        workflow.decide_request(
            request, actor=world.approver, decision="approve", now=request.decide_by
        )


def test_approval_is_refused_once_the_requester_is_no_longer_eligible(world: World) -> None:
    request = submit(world)
    User.objects.filter(pk=world.requester.pk).update(directory_groups=["aws-pb-cloud-eng"])

    with pytest.raises(refusals.RequesterNotEligible):
        approve(request, world.approver)
    denied = workflow.decide_request(request, actor=world.approver, decision="deny", now=NOW)
    assert denied.state == "denied"


# --- Cancelling ---------------------------------------------------------------------------


def test_only_the_requester_cancels_a_pending_request(world: World) -> None:
    request = submit(world)
    with pytest.raises(refusals.NotTheRequester):
        workflow.cancel_request(request, actor=world.approver, now=NOW)

    assert workflow.cancel_request(request, actor=world.requester, now=NOW).state == "cancelled"
    with pytest.raises(refusals.RequestNotPending):
        workflow.cancel_request(request, actor=world.requester, now=NOW)


def test_a_refusal_is_a_refused_audited_with_its_code_message_and_the_state_it_saw(
    world: World,
) -> None:
    request = submit(world)
    workflow.cancel_request(request, actor=world.requester, now=NOW)

    with pytest.raises(Refused) as caught:
        workflow.cancel_request(request, actor=world.requester, now=NOW)

    refusal = caught.value
    assert isinstance(refusal, refusals.RequestNotPending)
    assert (refusal.code, refusal.status) == ("request_not_pending", 409)
    assert refusal.message == f"Request #{request.pk} is already cancelled; it cannot be cancelled."
    (event,) = events("access_request.cancel_refused")
    assert event.data == {
        "reason": "request_not_pending",
        "message": refusal.message,
        "state": "cancelled",
    }
    assert (event.actor_user, event.target) == (world.requester, f"request #{request.pk}")


# --- Time ---------------------------------------------------------------------------------


def test_expired_grant_cannot_be_used_even_before_the_sweep_runs(world: World) -> None:
    request = submit(world, minutes=30)
    approve(request, world.approver, minutes=0)
    grant = Grant.objects.get(request=request)

    assert usable_access(world.requester, "111111111111", at=NOW + timedelta(minutes=29)) == "grant"
    later = grant.ends_at
    assert usable_access(world.requester, "111111111111", at=later) == "eligible"
    grant.refresh_from_db()
    assert grant.state == Grant.State.ACTIVE  # the check at use does not wait for the sweep

    report = grants.expire_due(now=later)

    assert report.grants_expired == 1
    grant.refresh_from_db()
    assert grant.state == Grant.State.EXPIRED
    assert events("grant.expired")[0].data["after"] == {"state": "expired"}
    assert grants.expire_due(now=later).grants_expired == 0


def test_undecided_request_expires_at_its_deadline(world: World) -> None:
    request = submit(world)
    assert grants.expire_due(now=request.decide_by - timedelta(seconds=1)).requests_expired == 0

    assert grants.expire_due(now=request.decide_by).requests_expired == 1

    request.refresh_from_db()
    assert request.state == AccessRequest.State.EXPIRED
    with pytest.raises(refusals.RequestNotPending):
        approve(request, world.approver)


def test_grant_stops_counting_when_the_requester_leaves_the_eligible_group(world: World) -> None:
    approve(submit(world), world.approver, minutes=0)
    User.objects.filter(pk=world.requester.pk).update(directory_groups=[])
    assert usable_access(world.requester, "111111111111", at=NOW + timedelta(minutes=1)) is None


def test_audit_chain_stays_valid_through_the_workflow(world: World) -> None:
    request = submit(world, account="222222222222")
    approve(request, world.approver)
    approve(request, world.second_approver)
    with pytest.raises(refusals.RequestNotPending):
        approve(request, world.approver)
    with pytest.raises(refusals.RequestNotFound):
        approve(request, world.outsider)
    assert verify_chain().ok


def test_standing_and_unrelated_rows_never_become_requestable(world: World) -> None:
    GroupMappingFactory(group="aws-dw-admin", role=world.admin_role)
    requestable = queries.list_requestable(world.requester, now=NOW)
    assert {(e.account_id, e.role) for e in requestable} == {
        ("111111111111", "admin"),
        ("222222222222", "admin"),
    }


def test_only_a_row_reaching_the_account_lends_its_approver_groups(world: World) -> None:
    prod_only = GroupMappingFactory(
        group="aws-pb-admin",
        role=world.admin_role,
        business_unit=world.dev.business_unit,
        access="eligible",
        accounts=["222222222222"],
        max_grant=timedelta(hours=8),
        approver_groups=["aws-pb-prod-leads"],
    )
    entitlements.clear_cache()
    lead = UserFactory(directory_groups=["aws-pb-prod-leads"])

    on_dev = submit(world, account="111111111111")
    on_prod = submit(world, account="222222222222", minutes=480)

    assert (on_dev.mapping, on_prod.mapping) == (world.eligible, prod_only)
    assert lead not in approvers.list_approvers(on_dev)
    assert lead in approvers.list_approvers(on_prod)
