from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.test import Client, override_settings
from django.utils import timezone

from federation.entitlements.resolve import find_entitlement
from federation.mappings import apply_document, parse_document, plan_change
from federation.mappings.drafts import (
    ReasonRequired,
    SelfApplyRefused,
    apply_draft,
    propose_change,
)
from federation.models import (
    AuditEvent,
    DraftKind,
    GroupMapping,
    MappingDraft,
    MappingVersion,
    User,
)
from federation.refusals import Refused
from tests.factories import UserFactory
from tests.mapping_samples import PB_CLOUD_ENG_DEV, mapping_yaml

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_tables")]

BASE = mapping_yaml([PB_CLOUD_ENG_DEV])


@pytest.fixture
def _tables() -> object:
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        apply_document(parse_document(BASE), actor="test", source="import", now=timezone.now())
        yield


@pytest.fixture
def alice() -> User:
    return UserFactory(email="alice@corp.example", directory_groups=["aws-dw-cloud-eng"])


def admin_client(email: str) -> Client:
    client = Client()
    client.force_login(UserFactory(email=email, directory_groups=["fed-admins"]))
    return client


NEW_ROW = {
    "group": "aws-dw-cloud-eng",
    "role": "cloud-eng",
    "business_unit": "dw",
    "access": "standing",
    "reason": "DW platform team onboarding",
}

PRIVILEGED_ROW = {
    "group": "aws-pb-admin",
    "role": "admin",
    "business_unit": "pb",
    "environments": ["prod"],
    "access": "eligible",
}


def test_non_admins_get_403_on_every_mapping_page(client: Client) -> None:
    client.force_login(UserFactory(directory_groups=["employees"]))
    for url in ("/mappings/", "/mappings/rows/new/", "/mappings/versions/", "/mappings/upload/"):
        assert client.get(url).status_code == 403
    assert client.post("/mappings/rows/new/", NEW_ROW).status_code == 403
    assert MappingDraft.objects.count() == 0


def test_a_change_is_a_draft_with_its_plan_until_applied(alice: User) -> None:
    client = admin_client("root@corp.example")
    response = client.post("/mappings/rows/new/", NEW_ROW)
    draft = MappingDraft.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/mappings/drafts/{draft.pk}/"

    page = client.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    assert "alice@corp.example" in page and "+ cloud-eng (standing)" in page
    assert "dw-dev (333333333333, dev)" in page
    assert MappingVersion.objects.count() == 1
    assert not GroupMapping.objects.filter(group="aws-dw-cloud-eng").exists()

    client.post(f"/mappings/drafts/{draft.pk}/apply/", {"comment": "ok"})

    draft.refresh_from_db()
    assert (draft.state, draft.applied_version) == ("applied", 2)
    version = MappingVersion.objects.get(number=2)
    assert version.source == "ui" and "DW platform team onboarding" in version.reason
    assert find_entitlement(
        alice.directory_groups, "333333333333", "cloud-eng", now=draft.created_at
    )
    assert AuditEvent.objects.filter(event_type="mappings.draft_proposed").count() == 1
    assert AuditEvent.objects.filter(event_type="mappings.apply").count() == 2


def test_privileged_or_prod_change_needs_a_second_admin() -> None:
    author = admin_client("author@corp.example")
    author.post(
        "/mappings/rows/new/",
        {
            **NEW_ROW,
            "group": "aws-pb-admin",
            "role": "admin",
            "business_unit": "pb",
            "environments": ["prod"],
            "access": "eligible",
            "max_grant_minutes": 120,
        },
    )
    draft = MappingDraft.objects.get()
    assert draft.needs_approval
    assert any("privileged" in r for r in draft.sensitive_because)
    assert any("pb-prod" in r for r in draft.sensitive_because)

    page = author.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    assert "Waiting for another administrator" in page
    author.post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "open" and MappingVersion.objects.count() == 1

    admin_client("second@corp.example").post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "applied"
    assert draft.decided_by.email == "second@corp.example"  # type: ignore[union-attr]
    assert GroupMapping.objects.filter(group="aws-pb-admin").exists()


@override_settings(MAPPING_CHANGES_NEED_SECOND_ADMIN=False)
def test_second_admin_rule_can_be_switched_off() -> None:
    author = admin_client("author@corp.example")
    author.post("/mappings/rows/new/", {**NEW_ROW, "role": "admin"})
    draft = MappingDraft.objects.get()
    assert not draft.needs_approval and draft.sensitive_because
    author.post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "applied"


def test_bad_form_input_names_the_fault_and_changes_nothing() -> None:
    client = admin_client("root@corp.example")
    response = client.post("/mappings/rows/new/", {**NEW_ROW, "accounts": "111111111111"})
    assert response.status_code == 400
    assert "111111111111" in response.content.decode()
    response = client.post("/mappings/rows/new/", {**NEW_ROW, "reason": ""})
    assert response.status_code == 400
    assert MappingDraft.objects.count() == 0


def test_a_change_that_changes_nothing_is_refused() -> None:
    client = admin_client("root@corp.example")
    response = client.post(
        "/mappings/rows/new/",
        {**NEW_ROW, "group": "aws-pb-cloud-eng", "business_unit": "pb", "environments": ["dev"]},
    )
    assert response.status_code == 400
    assert MappingDraft.objects.count() == 0


def test_a_draft_made_against_an_older_version_is_refused_as_stale() -> None:
    client = admin_client("root@corp.example")
    client.post("/mappings/rows/new/", NEW_ROW)
    client.post("/mappings/rows/new/", {**NEW_ROW, "group": "other-group"})
    first, second = MappingDraft.objects.order_by("pk")
    client.post(f"/mappings/drafts/{first.pk}/apply/")
    response = client.post(f"/mappings/drafts/{second.pk}/apply/", follow=True)
    second.refresh_from_db()
    assert second.state == "stale"
    assert "tables changed since this draft was made" in response.content.decode()
    assert not GroupMapping.objects.filter(group="other-group").exists()


def test_remove_and_edit_rows_through_drafts() -> None:
    client = admin_client("root@corp.example")
    row = GroupMapping.objects.get(group="aws-pb-cloud-eng")
    client.post(
        f"/mappings/rows/{row.pk}/edit/",
        {**NEW_ROW, "group": "aws-pb-cloud-eng", "business_unit": "pb", "reason": "all envs"},
    )
    draft = MappingDraft.objects.get()
    assert draft.needs_approval  # widening to every environment reaches pb-prod
    admin_client("second@corp.example").post(f"/mappings/drafts/{draft.pk}/apply/")
    assert GroupMapping.objects.get(group="aws-pb-cloud-eng").environments == []
    row = GroupMapping.objects.get(group="aws-pb-cloud-eng")
    client.post(f"/mappings/mappings/{row.pk}/remove/", {"reason": "team disbanded"})
    draft = MappingDraft.objects.latest("pk")
    admin_client("third@corp.example").post(f"/mappings/drafts/{draft.pk}/apply/")
    assert not GroupMapping.objects.exists()


def test_upload_validates_like_the_file_import() -> None:
    client = admin_client("root@corp.example")
    bad = BASE.replace("environment: dev}", "environment: staging}", 1)
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "staging" in text)
    response = client.post(
        "/mappings/upload/",
        {"file": SimpleUploadedFile("m.yaml", bad.encode()), "reason": "sync"},
    )
    assert response.status_code == 400
    assert f"line {line}," in response.content.decode()
    assert "staging" in response.content.decode()
    good = BASE + "  - {group: g2, role: cloud-eng, business_unit: dw, access: standing}\n"
    response = client.post(
        "/mappings/upload/",
        {"file": SimpleUploadedFile("m.yaml", good.encode()), "reason": "sync"},
    )
    assert response.status_code == 302
    assert MappingDraft.objects.get().kind == "upload"


def test_download_round_trips() -> None:
    client = admin_client("root@corp.example")
    text = b"".join(client.get("/mappings/export.yaml")).decode()
    response = client.post(
        "/mappings/upload/", {"file": SimpleUploadedFile("m.yaml", text.encode()), "reason": "x"}
    )
    assert response.status_code == 400
    assert "no difference" in response.content.decode()


def test_rollback_goes_through_a_draft_and_restores_the_version() -> None:
    client = admin_client("root@corp.example")
    client.post("/mappings/rows/new/", NEW_ROW)
    client.post(f"/mappings/drafts/{MappingDraft.objects.get().pk}/apply/")
    assert MappingVersion.objects.count() == 2
    assert "Roll back" in client.get("/mappings/versions/1/").content.decode()
    client.post("/mappings/versions/1/", {"reason": "undo onboarding"})
    draft = MappingDraft.objects.get(kind="rollback")
    assert "aws-dw-cloud-eng" in client.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    client.post(f"/mappings/drafts/{draft.pk}/apply/")
    assert MappingVersion.objects.count() == 3
    assert not GroupMapping.objects.filter(group="aws-dw-cloud-eng").exists()
    assert "v3" in client.get("/mappings/versions/").content.decode()


def test_another_admin_can_reject_and_rejected_drafts_cannot_be_applied() -> None:
    author = admin_client("author@corp.example")
    author.post("/mappings/rows/new/", NEW_ROW)
    draft = MappingDraft.objects.get()
    other = admin_client("other@corp.example")
    other.post(f"/mappings/drafts/{draft.pk}/reject/", {"comment": "wrong team"})
    draft.refresh_from_db()
    assert draft.state == "rejected"
    response = author.post(f"/mappings/drafts/{draft.pk}/apply/", follow=True)
    assert "only open drafts can be applied" in response.content.decode()
    assert MappingVersion.objects.count() == 1


def test_account_filter_lists_only_rows_that_reach_the_account() -> None:
    client = admin_client("root@corp.example")

    def groups_shown(account: str) -> bool:
        return "aws-pb-cloud-eng" in client.get("/mappings/", {"account": account}).content.decode()

    assert groups_shown("111111111111")  # pb-dev: the row's environment
    assert not groups_shown("222222222222")  # pb-prod: outside the row's environments
    assert not groups_shown("333333333333")  # dw-dev: another business unit
    assert not groups_shown("999999999999")  # unknown account: nothing


def test_draft_refusals_are_refused_with_stable_codes() -> None:
    author = UserFactory(email="author@corp.example", directory_groups=["fed-admins"])
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        now = timezone.now()
        document, _ = plan_change(lambda data: data["mappings"].append(dict(PRIVILEGED_ROW)))
        draft = propose_change(
            document, actor=author, kind=DraftKind.EDIT, summary="s", reason="r", now=now
        )
        with pytest.raises(SelfApplyRefused) as refused:
            apply_draft(draft.pk, actor=author, now=now)
        with pytest.raises(ReasonRequired) as no_reason:
            propose_change(
                document, actor=author, kind=DraftKind.EDIT, summary="s", reason=" ", now=now
            )
    assert isinstance(refused.value, Refused)
    assert (refused.value.code, refused.value.status) == ("self_apply", 403)
    assert (no_reason.value.code, no_reason.value.status) == ("reason_required", 400)
    draft.refresh_from_db()
    assert draft.state == "open"


def test_the_database_refuses_a_draft_of_an_unknown_kind() -> None:
    author = UserFactory(directory_groups=["fed-admins"])
    with pytest.raises(IntegrityError, match="mapping_draft_kind_valid"), transaction.atomic():
        MappingDraft.objects.create(
            created_by=author,
            kind="paste",
            summary="s",
            reason="r",
            base_version=1,
            document={},
            plan={},
            needs_approval=False,
        )


def test_the_row_form_holds_the_row_rules_of_the_model() -> None:
    client = admin_client("root@corp.example")
    response = client.post(
        "/mappings/rows/new/", {**NEW_ROW, "max_grant_minutes": 60, "approver_groups": "x"}
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "eligible rows only" in errors["max_grant_minutes"][0]
    assert "eligible rows only" in errors["approver_groups"][0]
    assert MappingDraft.objects.count() == 0
