"""The two-person rule on the command line: import_mappings and rollback_mappings (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from federation.audit.chain import verify_chain
from federation.mappings import apply_document, export_document, parse_document
from federation.models import AuditEvent, MappingDraft, MappingVersion, User
from tests.factories import UserFactory
from tests.mapping_samples import PB_ADMIN, SAMPLE_MAPPINGS, mapping_yaml

pytestmark = pytest.mark.django_db

SAMPLE = mapping_yaml()
# Gains the privileged admin role in a prod account for one more group: sensitive.
SENSITIVE = mapping_yaml([*SAMPLE_MAPPINGS, PB_ADMIN.replace("aws-pb-admin", "x")])
# Ordinary access in a dev account only: its author may apply it alone.
HARMLESS = mapping_yaml(
    [
        *SAMPLE_MAPPINGS,
        "{group: aws-pb-dev-only, role: cloud-eng, business_unit: pb, environments: [dev], "
        "access: standing}",
    ]
)


@pytest.fixture(autouse=True)
def _tables() -> Iterator[None]:
    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        apply_document(parse_document(SAMPLE), actor="test", source="import", now=timezone.now())
        yield


@pytest.fixture
def author() -> User:
    return UserFactory(username="ada", email="ada@corp.example", directory_groups=["fed-admins"])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mappings.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(*args: str) -> str:
    output = StringIO()
    call_command(*args, stdout=output)
    return output.getvalue()


def test_a_sensitive_import_without_a_second_admin_or_emergency_applies_nothing(
    tmp_path: Path,
) -> None:
    before = export_document()
    events = AuditEvent.objects.count()
    output = StringIO()
    with pytest.raises(CommandError, match="needs a second administrator") as refused:
        call_command("import_mappings", write(tmp_path, SENSITIVE), stdout=output)
    assert "--as" in str(refused.value) and "--emergency" in str(refused.value)
    assert "touches prod account(s): pb-prod" in output.getvalue()
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
    assert not MappingDraft.objects.exists()
    assert AuditEvent.objects.count() == events


def test_a_sensitive_import_becomes_a_draft_another_admin_applies(
    tmp_path: Path, author: User
) -> None:
    before = export_document()
    text = run(
        "import_mappings", write(tmp_path, SENSITIVE), "--as", "ada", "--reason", "INC-7 access"
    )
    draft = MappingDraft.objects.get()
    assert f"Proposed as draft #{draft.pk} (nothing applied yet)" in text
    assert f"/mappings/drafts/{draft.pk}/" in text
    assert "+ mapping x -> admin in pb" in text  # the plan is printed before
    assert (draft.kind, draft.state, draft.needs_approval) == ("import", "open", True)
    assert (draft.created_by, draft.reason, draft.base_version) == (author, "INC-7 access", 1)
    assert export_document() == before
    assert AuditEvent.objects.filter(event_type="mappings.draft_proposed").count() == 1

    with override_settings(ADMIN_GROUPS=["fed-admins"]):
        own = Client()
        own.force_login(author)
        own.post(f"/mappings/drafts/{draft.pk}/apply/")
        draft.refresh_from_db()
        assert draft.state == "open"  # the author cannot apply their own sensitive draft

        second = Client()
        second.force_login(UserFactory(directory_groups=["fed-admins"]))
        second.post(f"/mappings/drafts/{draft.pk}/apply/", {"comment": "checked"})
    draft.refresh_from_db()
    assert (draft.state, draft.applied_version) == ("applied", 2)
    assert export_document() == parse_document(SENSITIVE).to_dict()
    assert verify_chain().ok


def test_an_emergency_import_applies_at_once_and_says_so_on_the_audit_event(
    tmp_path: Path,
) -> None:
    text = run(
        "import_mappings",
        write(tmp_path, SENSITIVE),
        "--emergency",
        "--reason",
        "prod outage INC-9",
    )
    assert "Applied as mapping version 2" in text
    event = AuditEvent.objects.get(event_type="mappings.apply", data__version_after=2)
    assert event.actor.startswith("cli:")
    assert event.data["emergency"] is True
    assert event.data["reason"] == "prod outage INC-9"
    assert "touches prod account(s): pb-prod" in event.data["sensitive_because"]
    assert not MappingDraft.objects.exists()


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        (("--emergency",), "--emergency needs --reason"),
        (("--emergency", "--reason", "   "), "--emergency needs --reason"),
        (("--as", "ada", "--emergency", "--reason", "r"), "not both"),
        (("--as", "nobody", "--reason", "r"), "'nobody': no such person"),
        (("--as", "bob", "--reason", "r"), "'bob' is not an administrator"),
        (("--as", "ada"), "a reason is required"),
    ],
)
def test_bad_flags_are_refused_naming_the_fault_and_change_nothing(
    tmp_path: Path, author: User, args: tuple[str, ...], fault: str
) -> None:
    UserFactory(username="bob", directory_groups=["employees"])
    before = export_document()
    with pytest.raises(CommandError, match=fault):
        run("import_mappings", write(tmp_path, SENSITIVE), *args)
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
    assert not MappingDraft.objects.exists()


def test_an_email_shared_by_two_admin_identities_is_refused(tmp_path: Path) -> None:
    for name in ("ada-saml", "ada-oidc"):
        UserFactory(username=name, email="ada@corp.example", directory_groups=["fed-admins"])
    with pytest.raises(CommandError, match="2 administrator identities"):
        run("import_mappings", write(tmp_path, SENSITIVE), "--as", "ada@corp.example")
    assert not MappingDraft.objects.exists()


def test_a_harmless_import_still_applies_at_once(tmp_path: Path) -> None:
    assert "Applied as mapping version 2" in run("import_mappings", write(tmp_path, HARMLESS))
    event = AuditEvent.objects.get(event_type="mappings.apply", data__version_after=2)
    assert "emergency" not in event.data


def test_as_proposes_even_a_harmless_import(tmp_path: Path, author: User) -> None:
    run("import_mappings", write(tmp_path, HARMLESS), "--as", "ada@corp.example", "--reason", "r")
    draft = MappingDraft.objects.get()
    assert (draft.needs_approval, draft.created_by) == (False, author)
    assert MappingVersion.objects.count() == 1


def test_a_dry_run_of_a_sensitive_import_neither_applies_nor_proposes(
    tmp_path: Path, author: User
) -> None:
    text = run("import_mappings", write(tmp_path, SENSITIVE), "--dry-run", "--as", "ada")
    assert "Dry run: nothing applied." in text
    assert "Sensitive" in text
    assert not MappingDraft.objects.exists()
    assert MappingVersion.objects.count() == 1


@override_settings(MAPPING_CHANGES_NEED_SECOND_ADMIN=False)
def test_with_the_two_person_rule_off_a_sensitive_import_applies(tmp_path: Path) -> None:
    assert "Applied as mapping version 2" in run("import_mappings", write(tmp_path, SENSITIVE))


def test_a_sensitive_rollback_follows_the_same_rule(tmp_path: Path, author: User) -> None:
    run("import_mappings", write(tmp_path, SENSITIVE), "--emergency", "--reason", "INC-9")
    with pytest.raises(CommandError, match="needs a second administrator"):
        run("rollback_mappings", "1")
    text = run("rollback_mappings", "1", "--as", "ada", "--reason", "undo INC-9")
    draft = MappingDraft.objects.get()
    assert f"draft #{draft.pk}" in text
    assert (draft.kind, draft.needs_approval) == ("rollback", True)
    assert MappingVersion.objects.count() == 2
