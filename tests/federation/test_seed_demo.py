"""`seed_demo`: the SPEC §6 data set through the mapping apply path, idempotent, demo only."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from federation.entitlements.resolve import resolve_entitlements
from federation.mappings import dump_document_yaml, parse_document, plan_document
from federation.models import (
    Account,
    AuditEvent,
    BusinessUnit,
    IdentityProvider,
    LogicalRole,
    MappingVersion,
    User,
)

pytestmark = pytest.mark.django_db

ROLES = {
    "admin",
    "security",
    "operations",
    "network-eng",
    "database-eng",
    "cloud-eng",
    "release",
    "observability",
    "app-eng",
    "cost-mgmt",
}


def seed() -> str:
    output = StringIO()
    call_command("seed_demo", stdout=output)
    return output.getvalue()


@override_settings(DEMO_MODE=True)
def test_seed_demo_loads_the_demo_data_set() -> None:
    output = seed()

    assert "Applied as mapping version 1" in output
    assert dict(BusinessUnit.objects.values_list("slug", "name")) == {
        "pb": "Personal Banking",
        "dw": "Data Warehouse",
    }
    assert BusinessUnit.objects.get(slug="pb").approver_groups == ["aws-pb-managers"]
    assert dict(Account.objects.values_list("alias", "account_id")) == {
        "pb-dev": "111111111111",
        "pb-prod": "222222222222",
        "dw-dev": "333333333333",
        "dw-prod": "444444444444",
    }
    assert set(LogicalRole.objects.values_list("name", flat=True)) == ROLES
    assert set(LogicalRole.objects.filter(privileged=True).values_list("name", flat=True)) == {
        "admin",
        "security",
    }
    assert MappingVersion.objects.get().source == "seed"

    idp = IdentityProvider.objects.get(slug="demo")
    assert (idp.protocol, idp.entity_id, idp.display_name) == (
        "saml",
        "urn:fedaccess:demo-idp",
        "Demo IdP (development only)",
    )
    alice = User.objects.get(idp=idp, username="alice")
    assert alice.directory_groups == ["aws-pb-cloud-eng", "aws-pb-admin"]
    assert not alice.has_usable_password()
    groups = {u.username: u.directory_groups for u in User.objects.filter(idp=idp)}
    assert groups["bob"] == groups["carol"] == ["aws-pb-managers"]
    assert groups["dave"] == ["aws-dw-database-eng", "aws-dw-admin"]
    assert groups["erin"] == ["aws-dw-managers"]
    assert groups["admin"] == groups["admin2"] == ["fedaccess-admins"]
    assert groups["auditor"] == ["fedaccess-auditors"]
    assert "User alice@example.com (aws-pb-cloud-eng, aws-pb-admin): created" in output


@override_settings(DEMO_MODE=True)
def test_demo_users_get_what_the_demo_promises() -> None:
    seed()
    alice = User.objects.get(username="alice")
    found = {
        (e.account_alias, e.role, e.access, e.privileged)
        for e in resolve_entitlements(alice.directory_groups, now=timezone.now())
    }
    assert found == {
        ("pb-dev", "cloud-eng", "standing", False),
        ("pb-prod", "cloud-eng", "standing", False),
        ("pb-prod", "admin", "eligible", True),
    }
    dave = User.objects.get(username="dave")
    dave_accounts = {
        e.account_alias for e in resolve_entitlements(dave.directory_groups, now=timezone.now())
    }
    assert dave_accounts == {"dw-dev", "dw-prod"}  # never Personal Banking's


@override_settings(DEMO_MODE=True)
def test_seed_demo_is_idempotent() -> None:
    seed()
    exported = dump_document_yaml()
    events = AuditEvent.objects.count()
    users = User.objects.count()

    output = seed()

    assert "Mappings: No changes" in output
    assert "User alice@example.com (aws-pb-cloud-eng, aws-pb-admin): unchanged" in output
    assert dump_document_yaml() == exported
    assert MappingVersion.objects.count() == 1
    assert User.objects.count() == users
    assert AuditEvent.objects.count() == events


@override_settings(DEMO_MODE=True)
def test_seed_demo_restores_an_edited_demo_user() -> None:
    seed()
    User.objects.filter(username="erin").update(directory_groups=["aws-pb-admin"])
    output = seed()
    assert "User erin@example.com (aws-dw-managers): updated" in output
    assert User.objects.get(username="erin").directory_groups == ["aws-dw-managers"]


@override_settings(DEMO_MODE=False, DEBUG=False)
def test_seed_demo_refuses_outside_demo_mode() -> None:
    with pytest.raises(CommandError, match="DEMO_MODE"):
        seed()
    assert not BusinessUnit.objects.exists()
    assert not IdentityProvider.objects.exists()


def test_demo_file_exported_back_is_unchanged() -> None:
    from federation.management.commands.seed_demo import DEMO_MAPPINGS

    document = parse_document(DEMO_MAPPINGS.read_text(encoding="utf-8"))
    assert parse_document(dump_document_yaml(document)) == document
    assert plan_document(document).blockers == ()


def test_run_demo_tells_cli_users_where_the_local_sts_is() -> None:
    from federation.management.commands.run_demo import aws_cli_hint

    hint = aws_cli_hint("http://127.0.0.1:8080", "http://127.0.0.1:5999")
    assert "fedaccess login --url http://127.0.0.1:8080" in hint
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:5999" in hint
    assert "--profile pb-dev.cloud-eng" in hint
