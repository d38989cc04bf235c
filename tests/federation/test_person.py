"""One person, many identities (issue 12 item 2): which sign-ins are one person, and what the
link may and may not do. The end-to-end cases sign the same email in through two SAML IdPs
(pysaml2-signed responses) with different subjects."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from access_requests import refusals
from access_requests.models import AccessRequest, Grant
from access_requests.notifications import RequestEvent, build_notice
from access_requests.services import workflow
from federation.entitlements.resolve import find_entitlement
from federation.idp.identity import VerifiedIdentity
from federation.idp.signin import complete_sign_in
from federation.mappings import apply_document, parse_document
from federation.models import AuditEvent, IdentityProvider, MappingDraft, Person, User
from tests.access_requests.conftest import approved_request, build_world
from tests.factories import IdentityProviderFactory, UserFactory
from tests.mapping_samples import PB_CLOUD_ENG_DEV, mapping_yaml
from tests.saml_idp import SamlFlow, make_flow

pytestmark = pytest.mark.django_db

EMAIL = "alice@corp.example"


def sign_in(
    idp: IdentityProvider,
    subject: str,
    email: str = EMAIL,
    *,
    verified: bool = True,
    groups: tuple[str, ...] = (),
) -> User:
    request = RequestFactory().post("/saml/x/acs/", REMOTE_ADDR="192.0.2.7")
    request.session = SessionStore()
    return complete_sign_in(
        request,
        VerifiedIdentity(
            idp=idp, subject=subject, email=email, groups=groups, email_verified=verified
        ),
        now=timezone.now(),
    )


# --- The link rule -------------------------------------------------------------------------


def test_same_verified_email_through_another_idp_is_the_same_person() -> None:
    first = sign_in(IdentityProviderFactory(slug="okta"), "00u-alice")
    second = sign_in(IdentityProviderFactory(slug="entra"), "oid-7f3a", email="Alice@Corp.Example")

    assert first.pk != second.pk  # two identities: each keeps its own groups and access
    assert first.person_id is not None and second.person_id == first.person_id
    assert second.is_same_person(first)
    event = AuditEvent.objects.filter(event_type="signin.success").latest("id")
    assert (event.data["linked_by"], event.data["person"]) == ("email", first.person_id)


def test_an_email_the_idp_does_not_vouch_for_links_nobody() -> None:
    # OIDC without email_verified: true (Entra ID's "nOAuth": the user typed that address).
    first = sign_in(IdentityProviderFactory(slug="okta"), "00u-alice")
    unverified = sign_in(IdentityProviderFactory(slug="social"), "x1", verified=False)
    # An IdP whose users choose their own address is registered with link_by_email off.
    loose = IdentityProviderFactory(slug="loose", config={"link_by_email": False})
    chosen = sign_in(loose, "x2")

    assert len({first.person_id, unverified.person_id, chosen.person_id}) == 3
    # Not linked, yet never a second approver for the same address (refusals look wider).
    assert unverified.is_same_person(first) and chosen.is_same_person(first)


def test_a_recycled_email_at_the_same_idp_is_a_new_person_who_inherits_nothing() -> None:
    okta = IdentityProviderFactory(slug="okta")
    leaver = sign_in(okta, "00u-old", groups=("aws-pb-admin",))
    grant_holder_pk = leaver.pk
    User.objects.filter(pk=leaver.pk).update(email="gone@corp.example")
    newcomer = sign_in(okta, "00u-new")

    assert newcomer.person_id != leaver.person_id
    assert not newcomer.is_same_person(User.objects.get(pk=grant_holder_pk))
    assert newcomer.directory_groups == []


def test_a_person_already_at_this_idp_is_not_joined_by_a_second_subject_there() -> None:
    okta, entra = IdentityProviderFactory(slug="okta"), IdentityProviderFactory(slug="entra")
    alice_okta = sign_in(okta, "00u-alice")
    sign_in(entra, "oid-alice")  # linked to alice
    # A new subject at okta with alice's address: okta re-used it; not alice.
    namesake = sign_in(okta, "00u-namesake")
    assert namesake.person_id != alice_okta.person_id


def test_a_deactivated_identity_attracts_nobody_and_ambiguity_links_nobody() -> None:
    okta = IdentityProviderFactory(slug="okta")
    leaver = sign_in(okta, "00u-leaver")
    User.objects.filter(pk=leaver.pk).update(is_active=False)
    assert sign_in(IdentityProviderFactory(slug="entra"), "oid-new").person_id != leaver.person_id

    a = sign_in(IdentityProviderFactory(slug="a"), "1", email="dup@corp.example")
    User.objects.filter(pk=a.pk).update(person=Person.objects.create())
    b = sign_in(IdentityProviderFactory(slug="b"), "2", email="dup@corp.example")
    User.objects.filter(pk=b.pk).update(person=Person.objects.create())
    c = sign_in(IdentityProviderFactory(slug="c"), "3", email="dup@corp.example")
    assert c.person_id not in {
        User.objects.get(pk=a.pk).person_id,
        User.objects.get(pk=b.pk).person_id,
    }


def test_the_link_shares_no_access_between_identities() -> None:
    world = build_world()
    now = timezone.now()
    approved_request(world, now)
    assert Grant.objects.filter(user=world.requester).exists()
    twin = sign_in(IdentityProviderFactory(slug="entra"), "oid-rita", email=world.requester.email)
    assert twin.person_id == world.requester.person_id or twin.is_same_person(world.requester)
    assert find_entitlement([], "111111111111", "admin", now=now, user_id=twin.pk) is None


def test_data_migration_links_existing_identities_by_the_same_rule() -> None:
    migration = importlib.import_module("federation.migrations.0011_link_existing_people")
    okta, entra = IdentityProviderFactory(slug="okta"), IdentityProviderFactory(slug="entra")
    a = UserFactory(idp=okta, email="a@corp.example")
    a_twin = UserFactory(idp=entra, email="A@corp.example")
    recycled = [UserFactory(idp=okta, email="r@corp.example") for _ in range(2)]
    leaver = UserFactory(idp=okta, email="l@corp.example", is_active=False)
    leaver_twin = UserFactory(idp=entra, email="l@corp.example")
    local = UserFactory(idp=None, subject="")

    migration.link_people(apps, None)

    def person(user: User) -> int | None:
        return User.objects.get(pk=user.pk).person_id

    assert person(a) is not None and person(a) == person(a_twin)
    assert person(recycled[0]) != person(recycled[1])
    assert person(leaver) != person(leaver_twin)
    assert person(local) is not None
    migration.unlink_people(apps, None)
    assert not Person.objects.exists()


# --- Through two SAML IdPs ------------------------------------------------------------------


def saml_sign_in(flow: SamlFlow, subject: str, groups: list[str], email: str = EMAIL) -> Client:
    client = Client()
    seen = flow.start(client=client)
    xml = flow.signer.response_xml(
        seen, subject=subject, attributes={"email": [email], "groups": groups}
    )
    answer = flow.post(xml, seen.relay_state, client=client)
    assert answer.status_code == 302, answer.content
    return client


@pytest.fixture
def two_idps(tmp_path: Path, client: Client) -> tuple[SamlFlow, SamlFlow]:
    return make_flow("corp", tmp_path, client), make_flow("corp2", tmp_path, client)


def test_second_identity_cannot_approve_the_first_identitys_request(
    two_idps: tuple[SamlFlow, SamlFlow],
) -> None:
    okta, entra = two_idps
    build_world()
    as_requester = saml_sign_in(okta, "00u-alice", ["aws-pb-admin"])
    as_approver = saml_sign_in(entra, "oid-7f3a-alice", ["aws-pb-managers"])
    filed = as_requester.post(
        "/requests/",
        {
            "target": "111111111111/admin",
            "duration_minutes": "60",
            "justification": "INC-9 failover",
        },
    )
    assert filed.status_code == 302
    request = AccessRequest.objects.get()

    answer = as_approver.post(f"/approvals/{request.pk}/decide/", {"decision": "approve"})

    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING and not Grant.objects.exists()
    assert (
        "You cannot decide your own request."
        in as_approver.get(answer["Location"]).content.decode()
    )
    refused = AuditEvent.objects.get(event_type="access_request.decision_refused")
    assert refused.data["reason"] == "self_approval"
    # Nor is the request offered to that identity as one to decide.
    page = as_approver.get("/approvals/").content.decode()
    assert f'data-request="{request.pk}"' not in page


def test_second_identity_cannot_apply_the_first_identitys_sensitive_draft(
    two_idps: tuple[SamlFlow, SamlFlow],
) -> None:
    okta, entra = two_idps
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        apply_document(
            parse_document(mapping_yaml([PB_CLOUD_ENG_DEV])),
            actor="test",
            source="import",
            now=timezone.now(),
        )
        author = saml_sign_in(okta, "00u-alice", ["fed-admins"])
        twin = saml_sign_in(entra, "oid-7f3a-alice", ["fed-admins"])
        author.post(
            "/mappings/rows/new/",
            {
                "group": "aws-pb-admin",
                "role": "admin",
                "business_unit": "pb",
                "environments": ["prod"],
                "access": "eligible",
                "max_grant_minutes": 120,
                "reason": "prod on-call",
            },
        )
        draft = MappingDraft.objects.get()
        assert draft.needs_approval

        page = twin.get(f"/mappings/drafts/{draft.pk}/").content.decode()
        assert f"/mappings/drafts/{draft.pk}/apply/" not in page  # no apply button offered
        answer = twin.post(f"/mappings/drafts/{draft.pk}/apply/", {"comment": "lgtm"})
        draft.refresh_from_db()
        assert draft.state == "open" and draft.decided_by is None
        shown = twin.get(answer["Location"]).content.decode()
        assert "you cannot approve your own draft" in shown
        refused = AuditEvent.objects.get(event_type="mappings.draft_refused")
        assert refused.data["reason"] == "self_apply"
        assert refused.actor_user_id == User.objects.get(subject="oid-7f3a-alice").pk

        other = saml_sign_in(entra, "oid-bob", ["fed-admins"], email="bob@corp.example")
        other.post(f"/mappings/drafts/{draft.pk}/apply/", {"comment": "ok"})
        draft.refresh_from_db()
        assert draft.state == "applied"


def test_one_person_is_one_prod_approver_whatever_identity_votes() -> None:
    world = build_world()
    now = timezone.now()
    request = approved_request(world, now, account_id="222222222222")
    twin = sign_in(
        IdentityProviderFactory(slug="entra"),
        "oid-anna",
        email=world.approver.email,
        groups=("aws-pb-managers",),
    )
    with pytest.raises(refusals.AlreadyDecided):
        workflow.decide_request(request, actor=twin, decision="approve", now=now)
    request.refresh_from_db()
    assert request.state == AccessRequest.State.PENDING and not Grant.objects.exists()


def test_a_requesters_admin_twin_is_not_asked_to_decide_by_mail() -> None:
    world = build_world()
    unit = world.dev.business_unit
    unit.approver_groups = []
    unit.save()
    twin = sign_in(
        IdentityProviderFactory(slug="entra"),
        "oid-rita",
        email=world.requester.email,
        groups=("fed-admins",),
    )
    other_admin = UserFactory(directory_groups=["fed-admins"])
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        request = workflow.submit_request(
            world.requester,
            account_id="111111111111",
            role="admin",
            justification="x",
            duration=timedelta(hours=1),
            now=timezone.now(),
        )
        notice = build_notice(request, RequestEvent.SUBMITTED)
    assert request.unapprovable and twin.is_same_person(world.requester)
    assert notice.recipients == (other_admin.email,)
