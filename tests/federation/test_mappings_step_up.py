"""The mapping file's step-up and break-glass keys (SPEC §3.3): parsed, stored, exported back
unchanged, refused with the line at fault, and weighed by the second-admin rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from federation.mappings import (
    MappingFileInvalid,
    apply_document,
    dump_document_yaml,
    parse_document,
    plan_document,
)
from federation.models import Access, GroupMapping, LogicalRole
from tests.mapping_samples import PB_ADMIN, PB_CLOUD_ENG, ROLES, mapping_yaml

pytestmark = pytest.mark.django_db

MFA_ADMIN = "{name: admin, privileged: true, require_mfa: true, max_auth_age_minutes: 15}"
CLOUD_ENG = ROLES[0]
GLASS = (
    "{group: aws-pb-breakglass, role: admin, business_unit: pb, environments: [prod], "
    "access: break_glass, max_grant_minutes: 60}"
)


def _apply(text: str) -> None:
    apply_document(parse_document(text), actor="tester", source="import", now=timezone.now())


def test_step_up_and_break_glass_keys_are_stored_and_export_back_unchanged() -> None:
    text = mapping_yaml([PB_CLOUD_ENG, PB_ADMIN, GLASS], roles=(CLOUD_ENG, MFA_ADMIN))
    _apply(text)

    admin = LogicalRole.objects.get(name="admin")
    assert admin.require_mfa and admin.max_auth_age == timedelta(minutes=15)
    glass = GroupMapping.objects.get(group="aws-pb-breakglass")
    assert glass.access == Access.BREAK_GLASS and glass.max_grant == timedelta(minutes=60)
    exported = dump_document_yaml()
    assert "require_mfa: true, max_auth_age_minutes: 15" in exported
    assert "access: break_glass, max_grant_minutes: 60" in exported
    # Export then import is a no-op.
    assert plan_document(parse_document(exported)).is_empty


def test_a_break_glass_row_without_max_grant_gets_the_sixty_minute_default() -> None:
    document = parse_document(
        mapping_yaml([GLASS.replace(", max_grant_minutes: 60", "")], roles=ROLES)
    )
    assert document.mappings[0].max_grant == timedelta(minutes=60)


@pytest.mark.parametrize(
    ("role", "row", "fault"),
    [
        (
            "{name: admin, max_auth_age_minutes: 15}",
            GLASS,
            "max_auth_age_minutes applies only with require_mfa: true",
        ),
        ('{name: admin, require_mfa: "true"}', GLASS, "expected true or false"),
        ("{name: admin, require_mfa: true, max_auth_age_minutes: 0}", GLASS, "greater than"),
        (
            "{name: admin}",
            GLASS.replace("}", ", approver_groups: [aws-pb-leads]}"),
            "break-glass is reviewed afterwards",
        ),
        ("{name: admin}", GLASS.replace("break_glass", "breakglass"), "break_glass"),
        ("{name: admin}", GLASS.replace("60}", "10}"), "a grant lasts at least 30 minutes"),
    ],
)
def test_bad_step_up_or_break_glass_keys_are_refused_with_their_line(
    role: str, row: str, fault: str
) -> None:
    text = mapping_yaml([row], roles=(CLOUD_ENG, role))
    with pytest.raises(MappingFileInvalid) as refused:
        parse_document(text)
    message = str(refused.value)
    assert fault in message, message
    assert "line" in message


def test_adding_a_break_glass_row_needs_a_second_admin() -> None:
    _apply(mapping_yaml([PB_CLOUD_ENG], roles=ROLES))
    plan = plan_document(parse_document(mapping_yaml([PB_CLOUD_ENG, GLASS], roles=ROLES)))
    assert any("break-glass row" in reason for reason in plan.sensitive_because)


def test_turning_mfa_off_on_an_ordinary_role_needs_a_second_admin() -> None:
    mfa_cloud = "{name: cloud-eng, require_mfa: true}"
    dev_only = PB_CLOUD_ENG.replace("access: standing", "environments: [dev], access: standing")
    _apply(mapping_yaml([dev_only], roles=(mfa_cloud, ROLES[1])))

    plan = plan_document(parse_document(mapping_yaml([dev_only], roles=ROLES)))

    assert plan.sensitive_because == ("changes the MFA step-up of role(s): cloud-eng",), (
        plan.sensitive_because
    )
