"""The second-admin rule judges a mapping change by its effects (issue 12, item 1).

Each attack is a change one admin proposes and tries to apply alone: it must end up needing a
second admin, through the services and through the editor's HTTP pages, and its plan must name
what the people affected then reach. Harmless changes (dev only, or narrowing) stay
self-applicable.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.utils import timezone

from federation.entitlements.resolve import clear_cache, find_entitlement, resolve_entitlements
from federation.mappings import AccessItem, apply_document, parse_document, plan_document
from federation.mappings.drafts import SelfApplyRefused, apply_draft, propose_change
from federation.models import DraftKind, GroupMapping, MappingDraft, MappingVersion, User
from tests.factories import UserFactory
from tests.mapping_samples import (
    ACCOUNTS,
    BUSINESS_UNITS,
    DW_CLOUD_ENG,
    PB_ADMIN,
    PB_CLOUD_ENG,
    PB_OPS_DEV,
    ROLES,
    mapping_yaml,
)

pytestmark = [pytest.mark.django_db]

ROWS = (PB_CLOUD_ENG, PB_ADMIN, PB_OPS_DEV, DW_CLOUD_ENG)
BASE = mapping_yaml(ROWS)
PROD_ADMIN_ARN = "arn:aws:iam::222222222222:role/admin"


@pytest.fixture(autouse=True)
def _tables() -> object:
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        apply_document(parse_document(BASE), actor="test", source="import", now=timezone.now())
        yield


@pytest.fixture
def alice() -> User:
    """A pb cloud engineer: standing cloud-eng in every pb account, pb-prod included."""
    return UserFactory(email="alice@corp.example", directory_groups=["aws-pb-cloud-eng"])


@pytest.fixture
def mallory() -> User:
    return UserFactory(email="mallory@corp.example", directory_groups=["attacker-friends"])


def admin(email: str) -> Client:
    client = Client()
    client.force_login(UserFactory(email=email, directory_groups=["fed-admins"]))
    return client


def upload(client: Client, text: str) -> MappingDraft:
    response = client.post(
        "/mappings/upload/",
        {"file": SimpleUploadedFile("m.yaml", text.encode()), "reason": "sync"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return MappingDraft.objects.latest("pk")


def refused_alone(author: Client, draft: MappingDraft) -> None:
    """The author cannot apply it; a second admin can."""
    assert draft.needs_approval, draft.sensitive_because
    page = author.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    assert "Waiting for another administrator" in page
    author.post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "open"
    assert MappingVersion.objects.count() == 1
    admin("second@corp.example").post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "applied"


def applied_alone(author: Client, draft: MappingDraft) -> None:
    assert not draft.needs_approval and not draft.sensitive_because, draft.sensitive_because
    author.post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "applied"


def with_rows(*rows: str, **sections: Iterable[str]) -> str:
    return mapping_yaml(rows or ROWS, **sections)  # type: ignore[arg-type]


# --- The four attacks of the issue -------------------------------------------------------------

ARN_ATTACK = with_rows(
    account_roles=[f'{{account: "222222222222", role: cloud-eng, role_arn: "{PROD_ADMIN_ARN}"}}']
)


def test_pointing_a_prod_account_role_at_the_admin_arn_needs_a_second_admin(alice: User) -> None:
    author = admin("author@corp.example")
    draft = upload(author, ARN_ATTACK)

    assert any("pb-prod" in reason for reason in draft.sensitive_because)
    assert any(PROD_ADMIN_ARN in reason for reason in draft.sensitive_because)
    page = author.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    assert "alice@corp.example" in page
    assert f"pb-prod (222222222222, prod) as {PROD_ADMIN_ARN}" in page
    refused_alone(author, draft)
    clear_cache()
    reached = find_entitlement(
        alice.directory_groups, "222222222222", "cloud-eng", now=timezone.now()
    )
    assert reached is not None and reached.role_arn == PROD_ADMIN_ARN


def test_the_arn_plan_names_each_person_gaining_the_admin_arn(alice: User) -> None:
    UserFactory(email="bob@corp.example", directory_groups=["aws-pb-cloud-eng", "x"])
    UserFactory(email="carol@corp.example", directory_groups=["aws-dw-cloud-eng"])
    plan = plan_document(parse_document(ARN_ATTACK))

    gained = {
        diff.subject: [(i.account_id, i.role_arn, i.privileged) for i in diff.gained]
        for diff in plan.users
    }
    assert gained == {
        "alice@corp.example": [("222222222222", PROD_ADMIN_ARN, True)],
        "bob@corp.example": [("222222222222", PROD_ADMIN_ARN, True)],
    }
    group = next(d for d in plan.groups if d.subject == "aws-pb-cloud-eng")
    assert [i.role_arn for i in group.lost] == ["arn:aws:iam::222222222222:role/cloud-eng"]
    text = plan.render_text()
    assert (
        f"+ cloud-eng (standing) in pb-prod 222222222222 [pb/prod] as {PROD_ADMIN_ARN}"
        "  [privileged]"
    ) in text
    assert "- cloud-eng (standing) in pb-prod 222222222222 [pb/prod]\n" in text
    entry = next(u for u in plan.to_json()["users"] if u["subject"] == "alice@corp.example")
    assert entry["gained"][0]["role_arns"] == {"222222222222": PROD_ADMIN_ARN}
    assert plan.sensitive_because


def test_approver_groups_on_a_prod_eligible_row_need_a_second_admin(mallory: User) -> None:
    author = admin("author@corp.example")
    row = GroupMapping.objects.get(group="aws-pb-admin")
    author.post(
        f"/mappings/rows/{row.pk}/edit/",
        {
            "group": "aws-pb-admin",
            "role": "admin",
            "business_unit": "pb",
            "environments": ["prod"],
            "access": "eligible",
            "max_grant_minutes": 240,
            "approver_groups": "attacker-friends",
            "reason": "more approvers",
        },
    )
    draft = MappingDraft.objects.get()
    assert any("widens approval power" in r for r in draft.sensitive_because)
    page = author.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    assert "attacker-friends" in page and "mallory@corp.example" in page
    assert "admin requested by aws-pb-admin in pb-prod (222222222222, prod)" in page
    refused_alone(author, draft)


def test_raising_a_prod_rows_max_grant_needs_a_second_admin() -> None:
    author = admin("author@corp.example")
    UserFactory(email="pat@corp.example", directory_groups=["aws-pb-admin"])
    row = GroupMapping.objects.get(group="aws-pb-admin")
    author.post(
        f"/mappings/rows/{row.pk}/edit/",
        {
            "group": "aws-pb-admin",
            "role": "admin",
            "business_unit": "pb",
            "environments": ["prod"],
            "access": "eligible",
            "max_grant_minutes": 1440,
            "reason": "longer grants",
        },
    )
    draft = MappingDraft.objects.get()
    assert any("pb-prod" in r for r in draft.sensitive_because)
    page = author.get(f"/mappings/drafts/{draft.pk}/").content.decode()
    assert "pat@corp.example" in page and "grant up to 1440 min" in page
    text = plan_document(
        parse_document(
            with_rows(PB_CLOUD_ENG, PB_ADMIN.replace("240", "1440"), PB_OPS_DEV, DW_CLOUD_ENG)
        )
    ).render_text()
    shown = "admin (eligible) in pb-prod 222222222222 [pb/prod] (max session 60 min, max grant"
    assert f"+ {shown} 1440 min)  [privileged]" in text
    assert f"- {shown} 240 min)  [privileged]" in text
    refused_alone(author, draft)


def test_widening_a_business_units_approver_groups_needs_a_second_admin(mallory: User) -> None:
    units = (BUSINESS_UNITS[0].replace("[aws-pb-managers]", "[aws-pb-managers, attacker-friends]"),)
    author = admin("author@corp.example")
    draft = upload(author, with_rows(business_units=(*units, BUSINESS_UNITS[1])))
    assert any("widens approval power" in r for r in draft.sensitive_because)
    assert any("pb-prod" in r for r in draft.sensitive_because)
    plan = plan_document(parse_document(with_rows(business_units=(*units, BUSINESS_UNITS[1]))))
    assert [d.subject for d in plan.approver_users] == ["mallory@corp.example"]
    assert "attacker-friends may decide" in plan.render_text()
    refused_alone(author, draft)


# --- The same class elsewhere: every way to change what someone reaches -------------------------


@pytest.mark.parametrize(
    "text",
    [
        # A prod account role's session raised.
        with_rows(
            account_roles=['{account: "222222222222", role: cloud-eng, max_session_minutes: 720}']
        ),
        # The logical role's session raised: pb cloud-eng holds it standing in pb-prod.
        mapping_yaml(ROWS, roles=("{name: cloud-eng, max_session_minutes: 720}", ROLES[1])),
        # A dev account role pointed at the dev account's admin role (a privileged ARN).
        with_rows(
            account_roles=[
                '{account: "111111111111", role: cloud-eng, '
                'role_arn: "arn:aws:iam::111111111111:role/admin"}'
            ]
        ),
        # The same role, named with another case and a path (IAM names ignore both).
        with_rows(
            account_roles=[
                '{account: "111111111111", role: cloud-eng, '
                'role_arn: "arn:aws:iam::111111111111:role/break/ADMIN"}'
            ]
        ),
        # Approver groups added to a dev eligible row: more people decide existing requests.
        with_rows(
            PB_CLOUD_ENG,
            PB_ADMIN,
            PB_OPS_DEV.replace("[aws-pb-leads]", "[aws-pb-leads, attacker-friends]"),
            DW_CLOUD_ENG,
        ),
        # An account's own approver groups widened, and a prod account needing fewer approvals.
        with_rows(
            accounts=(ACCOUNTS[0].replace("dev}", "dev, approver_groups: [x]}"), *ACCOUNTS[1:])
        ),
        with_rows(
            accounts=(
                ACCOUNTS[0],
                ACCOUNTS[1].replace("prod}", "prod, approvals_required: 1}"),
                ACCOUNTS[2],
            )
        ),
        # A dev account becomes prod; pb-prod moves to another business unit.
        with_rows(
            accounts=(ACCOUNTS[0].replace("environment: dev", "environment: prod"), *ACCOUNTS[1:])
        ),
        with_rows(
            accounts=(
                ACCOUNTS[0],
                ACCOUNTS[1].replace("business_unit: pb", "business_unit: dw"),
                ACCOUNTS[2],
            )
        ),
        # Rows removed that give prod access; the admin role stripped of its privileged flag.
        with_rows(
            PB_CLOUD_ENG.replace("access: standing", "environments: [dev], access: standing"),
            PB_ADMIN,
            PB_OPS_DEV,
            DW_CLOUD_ENG,
        ),
        mapping_yaml(ROWS, roles=(ROLES[0], ROLES[1].replace("true", "false"))),
    ],
    ids=[
        "prod-account-role-session",
        "role-session",
        "dev-privileged-arn",
        "dev-privileged-arn-other-case-and-path",
        "dev-row-approvers",
        "account-approvers",
        "prod-approvals-lowered",
        "dev-becomes-prod",
        "prod-moves-unit",
        "prod-access-removed",
        "privileged-flag-dropped",
    ],
)
def test_changes_with_prod_privileged_or_approval_effects_need_a_second_admin(text: str) -> None:
    author = admin("author@corp.example")
    refused_alone(author, upload(author, text))


def test_a_rollback_to_a_sensitive_version_needs_a_second_admin() -> None:
    now = timezone.now()
    apply_document(parse_document(ARN_ATTACK), actor="two admins", source="ui", now=now)
    apply_document(parse_document(BASE), actor="undo", source="ui", now=now)
    author = admin("author@corp.example")
    author.post("/mappings/versions/2/", {"reason": "restore"})
    draft = MappingDraft.objects.get(kind="rollback")
    assert draft.needs_approval
    assert any(PROD_ADMIN_ARN in reason for reason in draft.sensitive_because)
    author.post(f"/mappings/drafts/{draft.pk}/apply/")
    draft.refresh_from_db()
    assert draft.state == "open" and MappingVersion.objects.count() == 3


def test_the_services_refuse_the_author_of_an_effect_sensitive_draft() -> None:
    author = UserFactory(directory_groups=["fed-admins"])
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        now = timezone.now()
        draft = propose_change(
            parse_document(ARN_ATTACK),
            actor=author,
            kind=DraftKind.UPLOAD,
            summary="s",
            reason="r",
            now=now,
        )
        with pytest.raises(SelfApplyRefused):
            apply_draft(draft.pk, actor=author, now=now)
    assert draft.plan["sensitive_because"] == draft.sensitive_because


# --- Harmless changes stay self-applicable -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # Dev-only access gained: a new standing row, a new eligible row, a dev ARN.
        with_rows(*ROWS, "{group: g2, role: cloud-eng, business_unit: dw, access: standing}"),
        with_rows(
            *ROWS,
            "{group: g3, role: cloud-eng, business_unit: pb, environments: [dev], "
            "access: eligible, max_grant_minutes: 60}",
        ),
        with_rows(
            account_roles=[
                '{account: "111111111111", role: cloud-eng, '
                'role_arn: "arn:aws:iam::111111111111:role/ReadOnly"}'
            ]
        ),
        # Narrowing in dev: a shorter grant, one approver group fewer, a dev row removed.
        with_rows(PB_CLOUD_ENG, PB_ADMIN, PB_OPS_DEV.replace("120", "30"), DW_CLOUD_ENG),
        with_rows(
            PB_CLOUD_ENG,
            PB_ADMIN,
            PB_OPS_DEV.replace(", approver_groups: [aws-pb-leads]", ""),
            DW_CLOUD_ENG,
        ),
        with_rows(PB_CLOUD_ENG, PB_ADMIN, PB_OPS_DEV),
    ],
    ids=[
        "dev-standing",
        "dev-eligible",
        "dev-arn",
        "dev-shorter",
        "dev-fewer-approvers",
        "dev-removed",
    ],
)
def test_dev_only_or_narrowing_changes_stay_self_applicable(text: str) -> None:
    author = admin("author@corp.example")
    applied_alone(author, upload(author, text))


def test_the_plan_agrees_with_resolution_on_arns_and_limits() -> None:
    users = [
        UserFactory(directory_groups=groups)
        for groups in (["aws-pb-cloud-eng"], ["aws-pb-admin", "aws-pb-ops"], ["aws-pb-ops"])
    ]
    changed = mapping_yaml(
        (PB_CLOUD_ENG, PB_ADMIN.replace("240", "480"), PB_OPS_DEV.replace("120", "30")),
        roles=("{name: cloud-eng, max_session_minutes: 90}", ROLES[1]),
        account_roles=[
            f'{{account: "222222222222", role: cloud-eng, role_arn: "{PROD_ADMIN_ARN}"}}'
        ],
    )

    def reached(user: User) -> set[tuple[object, ...]]:
        clear_cache()
        found = resolve_entitlements(user.directory_groups, now=timezone.now())
        return {
            (e.account_id, e.role, e.access, e.role_arn, e.max_session, e.max_grant) for e in found
        }

    def as_tuples(items: Iterable[AccessItem]) -> set[tuple[object, ...]]:
        return {
            (i.account_id, i.role, i.access, i.role_arn, i.max_session, i.max_grant) for i in items
        }

    before = {u.pk: reached(u) for u in users}
    plan = apply_document(
        parse_document(changed), actor="t", source="import", now=timezone.now()
    ).plan
    after = {u.pk: reached(u) for u in users}

    planned = {d.user_id: d for d in plan.users}
    for user in users:
        diff = planned.get(user.pk)
        assert (as_tuples(diff.gained) if diff else set()) == after[user.pk] - before[user.pk]
        assert (as_tuples(diff.lost) if diff else set()) == before[user.pk] - after[user.pk]
