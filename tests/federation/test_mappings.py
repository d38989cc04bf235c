"""Mapping documents: validation with the line at fault, plan, atomic apply, export, rollback."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from federation.audit.chain import verify_chain
from federation.entitlements.resolve import resolve_entitlements
from federation.mappings import (
    AccessItem,
    MappingConflict,
    MappingFileInvalid,
    RemovalRefused,
    VersionNotFound,
    apply_document,
    document_from_data,
    dump_document_yaml,
    export_document,
    parse_document,
    plan_document,
    rollback_to_version,
)
from federation.mappings.document import make_document
from federation.models import Account, AuditEvent, BusinessUnit, GroupMapping, MappingVersion
from tests.factories import AccessRequestFactory, GrantFactory, UserFactory
from tests.mapping_samples import PB_ADMIN, PB_CLOUD_ENG_DEV, mapping_yaml

pytestmark = pytest.mark.django_db

# Line numbers below refer to this text: line 1 is "business_units:", the mappings are lines 12-14.
SAMPLE = mapping_yaml()


def replace_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


def apply_text(text: str, **kwargs: Any) -> Any:
    kwargs.setdefault("actor", "tester")
    kwargs.setdefault("source", "import")
    kwargs.setdefault("now", timezone.now())
    return apply_document(parse_document(text), **kwargs)


def write(tmp_path: Path, text: str, name: str = "mappings.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def triples(items: tuple[AccessItem, ...]) -> set[tuple[str, str, str]]:
    return {(item.account_id, item.role, item.access) for item in items}


# --- Parsing --------------------------------------------------------------------------------


def test_spec_sample_parses_with_defaults_filled_in() -> None:
    document = parse_document(SAMPLE)
    accounts = {a.alias: a for a in document.accounts}
    assert accounts["pb-dev"].approvals_required == 1
    assert accounts["pb-prod"].approvals_required == 2  # prod defaults to two approvers
    assert accounts["pb-dev"].region == "us-east-1"
    admin = next(m for m in document.mappings if m.group == "aws-pb-admin")
    assert admin.max_grant == timedelta(minutes=240)
    assert admin.environments == ("prod",)
    assert next(r for r in document.roles if r.name == "admin").privileged


def test_eligible_rows_default_to_sixty_minute_grants() -> None:
    text = replace_line(
        SAMPLE,
        13,
        "  - {group: aws-pb-admin, role: admin, business_unit: pb, access: eligible}",
    )
    admin = next(m for m in parse_document(text).mappings if m.group == "aws-pb-admin")
    assert admin.max_grant == timedelta(minutes=60)


BAD_INPUTS = [
    (
        "bad-yaml",
        replace_line(SAMPLE, 9, "  - {name: cloud-eng, max_session_minutes: 60"),
        10,
        "not valid YAML",
    ),
    ("unknown-section", SAMPLE + "colour: red\n", 15, "unknown section 'colour'"),
    (
        "unknown-key",
        replace_line(
            SAMPLE,
            13,
            "  - {group: aws-pb-admin, role: admin, business_unit: pb, access: eligible, ttl: 5}",
        ),
        13,
        "unknown key 'ttl'",
    ),
    (
        "missing-key",
        replace_line(
            SAMPLE, 12, "  - {group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb}"
        ),
        12,
        "missing key 'access'",
    ),
    (
        "wrong-type",
        replace_line(SAMPLE, 10, '  - {name: admin, privileged: "true", max_session_minutes: 60}'),
        10,
        "expected true or false",
    ),
    (
        "unquoted-account-id",
        replace_line(
            SAMPLE, 5, "  - {id: 111111111111, alias: pb-dev, business_unit: pb, environment: dev}"
        ),
        5,
        "account ids must be quoted strings",
    ),
    (
        "short-account-id",
        replace_line(
            SAMPLE,
            6,
            '  - {id: "22222222222", alias: pb-prod, business_unit: pb, environment: prod}',
        ),
        6,
        "exactly 12 digits",
    ),
    (
        "unknown-business-unit",
        replace_line(
            SAMPLE,
            7,
            '  - {id: "333333333333", alias: dw-dev, business_unit: dx, environment: dev}',
        ),
        7,
        "unknown business unit 'dx'",
    ),
    (
        "unknown-role",
        replace_line(
            SAMPLE,
            12,
            "  - {group: aws-pb-cloud-eng, role: cloud-engineer, business_unit: pb,"
            " access: standing}",
        ),
        12,
        "unknown role 'cloud-engineer'",
    ),
    (
        "unknown-account",
        replace_line(
            SAMPLE,
            14,
            "  - {group: aws-dw-cloud-eng, role: cloud-eng, business_unit: dw,"
            ' accounts: ["999999999999"], access: standing}',
        ),
        14,
        "unknown account '999999999999'",
    ),
    (
        "account-of-another-business-unit",
        replace_line(
            SAMPLE,
            14,
            "  - {group: aws-dw-cloud-eng, role: cloud-eng, business_unit: dw,"
            ' accounts: ["111111111111"], access: standing}',
        ),
        14,
        "account 111111111111 belongs to business unit 'pb', not 'dw'",
    ),
    (
        "account-outside-environments",
        replace_line(
            SAMPLE,
            12,
            "  - {group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb,"
            ' environments: [dev], accounts: ["222222222222"], access: standing}',
        ),
        12,
        "outside this row's environments",
    ),
    (
        "duplicate-business-unit",
        replace_line(SAMPLE, 3, "  - {slug: pb, name: Data Warehouse}"),
        3,
        "duplicate business unit 'pb'",
    ),
    (
        "duplicate-account-id",
        replace_line(
            SAMPLE,
            7,
            '  - {id: "111111111111", alias: dw-dev, business_unit: dw, environment: dev}',
        ),
        7,
        "duplicate account id '111111111111'",
    ),
    (
        "duplicate-alias",
        replace_line(
            SAMPLE,
            7,
            '  - {id: "333333333333", alias: pb-dev, business_unit: dw, environment: dev}',
        ),
        7,
        "duplicate alias 'pb-dev'",
    ),
    (
        "duplicate-role",
        replace_line(SAMPLE, 10, "  - {name: cloud-eng, privileged: true}"),
        10,
        "duplicate role 'cloud-eng'",
    ),
    (
        "duplicate-mapping-scope",
        SAMPLE + "  - {group: aws-pb-admin, role: admin, business_unit: pb, environments: [prod],"
        " access: standing}\n",
        15,
        "duplicate mapping",
    ),
    (
        "bad-account-environment",
        replace_line(
            SAMPLE,
            7,
            '  - {id: "333333333333", alias: dw-dev, business_unit: dw, environment: staging}',
        ),
        7,
        "must be 'dev', 'test' or 'prod'",
    ),
    (
        "bad-mapping-environment",
        replace_line(
            SAMPLE,
            13,
            "  - {group: aws-pb-admin, role: admin, business_unit: pb,"
            " environments: [production], access: eligible}",
        ),
        13,
        "'production'",
    ),
    (
        "max-grant-on-standing",
        replace_line(
            SAMPLE,
            12,
            "  - {group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb,"
            " access: standing, max_grant_minutes: 60}",
        ),
        12,
        "eligible rows only",
    ),
    (
        "approvers-on-standing",
        replace_line(
            SAMPLE,
            12,
            "  - {group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb,"
            " access: standing, approver_groups: [x]}",
        ),
        12,
        "eligible rows only",
    ),
    (
        "grant-shorter-than-the-shortest-grant",
        replace_line(
            SAMPLE,
            13,
            "  - {group: aws-pb-admin, role: admin, business_unit: pb,"
            " environments: [prod], access: eligible, max_grant_minutes: 15}",
        ),
        13,
        "a grant lasts at least 30 minutes",
    ),
    (
        "grant-one-minute-short",
        replace_line(
            SAMPLE,
            13,
            "  - {group: aws-pb-admin, role: admin, business_unit: pb,"
            " environments: [prod], access: eligible, max_grant_minutes: 29}",
        ),
        13,
        "got the number 29",
    ),
    (
        "session-too-short",
        replace_line(SAMPLE, 9, "  - {name: cloud-eng, max_session_minutes: 10}"),
        9,
        "greater than or equal to 15",
    ),
    (
        "duplicate-yaml-key",
        replace_line(SAMPLE, 9, "  - {name: cloud-eng, name: network-eng}"),
        9,
        "duplicate key 'name'",
    ),
    (
        "yaml-alias",
        replace_line(SAMPLE, 3, "  - &unit {slug: dw, name: Data Warehouse}") + "other: *unit\n",
        3,
        "aliases",
    ),
    (
        "role-arn-in-another-account",
        SAMPLE + "account_roles:\n"
        '  - {account: "111111111111", role: admin,'
        ' role_arn: "arn:aws:iam::222222222222:role/x"}\n',
        16,
        "role ARN is in account 222222222222",
    ),
    ("empty-file", "", 1, "the file is empty"),
    (
        "missing-section",
        "business_units: []\naccounts: []\nmappings: []\n",
        1,
        "missing section 'roles'",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "fault"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_file_is_refused_with_line_and_nothing_changes(
    tmp_path: Path, text: str, line: int, fault: str
) -> None:
    with pytest.raises(MappingFileInvalid) as raised:
        parse_document(text)
    assert any(e.line == line and fault in e.message for e in raised.value.errors), [
        str(e) for e in raised.value.errors
    ]

    apply_text(SAMPLE)
    before = export_document()
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError) as command_error:
        call_command("import_mappings", write(tmp_path, text), stdout=StringIO())
    assert f"line {line}" in str(command_error.value)
    assert fault in str(command_error.value)
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_all_faults_are_reported_at_once_in_line_order() -> None:
    text = replace_line(
        SAMPLE, 5, "  - {id: 111111111111, alias: pb-dev, business_unit: pb, environment: dev}"
    )
    text = replace_line(text, 10, "  - {name: admin, privileged: maybe}")
    text = replace_line(
        text, 14, "  - {group: aws-dw-cloud-eng, role: nope, business_unit: dw, access: standing}"
    )
    with pytest.raises(MappingFileInvalid) as raised:
        parse_document(text)
    assert [e.line for e in raised.value.errors] == [5, 10, 14]
    assert "line 14, mappings[2].role: unknown role 'nope'" in str(raised.value)


def test_a_bad_item_does_not_make_references_to_it_fail() -> None:
    # The business unit's item is invalid; the accounts naming it must not add noise.
    text = replace_line(SAMPLE, 2, "  - {slug: pb, name: Personal Banking, colour: blue}")
    with pytest.raises(MappingFileInvalid) as raised:
        parse_document(text)
    assert [e.line for e in raised.value.errors] == [2]


def test_stored_documents_are_validated_with_paths() -> None:
    with pytest.raises(MappingFileInvalid) as raised:
        document_from_data({"business_units": [], "accounts": [], "roles": [], "mappings": [{}]})
    assert {e.path for e in raised.value.errors} >= {"mappings[0].group", "mappings[0].role"}
    assert all(e.line is None for e in raised.value.errors)


# --- Plan -----------------------------------------------------------------------------------

# pb cloud engineers narrowed to dev, pb admins widened to dev, dw cloud engineers removed.
CHANGED = mapping_yaml([PB_CLOUD_ENG_DEV, PB_ADMIN.replace("[prod]", "[dev, prod]")])


def test_plan_names_groups_and_users_gaining_and_losing() -> None:
    apply_text(SAMPLE)
    alice = UserFactory(email="alice@corp.example", directory_groups=["aws-pb-cloud-eng"])
    bob = UserFactory(directory_groups=["aws-pb-admin", "aws-pb-cloud-eng"])
    carol = UserFactory(directory_groups=["aws-dw-cloud-eng"])
    UserFactory(directory_groups=["aws-unrelated"])

    plan = plan_document(parse_document(CHANGED))

    assert plan.base_version == 1
    groups = {diff.subject: diff for diff in plan.groups}
    assert set(groups) == {"aws-pb-cloud-eng", "aws-pb-admin", "aws-dw-cloud-eng"}
    assert triples(groups["aws-pb-cloud-eng"].lost) == {("222222222222", "cloud-eng", "standing")}
    assert triples(groups["aws-pb-cloud-eng"].gained) == set()
    assert triples(groups["aws-pb-admin"].gained) == {("111111111111", "admin", "eligible")}
    assert groups["aws-pb-admin"].gained[0].privileged
    assert triples(groups["aws-dw-cloud-eng"].lost) == {("333333333333", "cloud-eng", "standing")}

    users = {diff.user_id: diff for diff in plan.users}
    assert set(users) == {alice.pk, bob.pk, carol.pk}
    assert users[alice.pk].subject == "alice@corp.example"
    assert triples(users[bob.pk].gained) == {("111111111111", "admin", "eligible")}
    assert triples(users[bob.pk].lost) == {("222222222222", "cloud-eng", "standing")}
    assert triples(users[carol.pk].lost) == {("333333333333", "cloud-eng", "standing")}

    text = plan.render_text()
    assert "- mapping aws-dw-cloud-eng -> cloud-eng in dw" in text
    assert "+ admin (eligible) in pb-dev 111111111111 [pb/dev]  [privileged]" in text
    as_json = plan.to_json()
    assert as_json["counts"]["mapping"] == {"add": 2, "remove": 3, "change": 0}
    bob_json = next(u for u in as_json["users"] if u["user_id"] == bob.pk)
    assert bob_json["gained"] == [
        {
            "role": "admin",
            "access": "eligible",
            "privileged": True,
            "accounts": ["111111111111"],
            "max_session_minutes": 60,
            "max_grant_minutes": 240,
        }
    ]
    assert as_json["accounts"]["111111111111"] == {
        "alias": "pb-dev",
        "business_unit": "pb",
        "environment": "dev",
    }


def test_plan_access_diff_agrees_with_entitlement_resolution() -> None:
    apply_text(SAMPLE)
    users = [
        UserFactory(directory_groups=groups)
        for groups in (
            ["aws-pb-cloud-eng"],
            ["aws-pb-admin", "aws-pb-cloud-eng"],
            ["aws-dw-cloud-eng", "aws-pb-admin"],
        )
    ]
    now = timezone.now()

    def access(user: Any) -> set[tuple[str, str, str]]:
        found = resolve_entitlements(user.directory_groups, now=now)
        return {(e.account_id, e.role, e.access) for e in found}

    before = {user.pk: access(user) for user in users}
    plan = apply_text(CHANGED).plan
    after = {user.pk: access(user) for user in users}

    planned = {diff.user_id: diff for diff in plan.users}
    for user in users:
        diff = planned.get(user.pk)
        assert (triples(diff.gained) if diff else set()) == after[user.pk] - before[user.pk]
        assert (triples(diff.lost) if diff else set()) == before[user.pk] - after[user.pk]


def test_moving_an_account_between_business_units_shows_in_the_access_diff() -> None:
    apply_text(SAMPLE)
    moved = replace_line(
        SAMPLE, 6, '  - {id: "222222222222", alias: pb-prod, business_unit: dw, environment: prod}'
    )
    moved = moved.replace(
        "business_unit: pb, environments: [prod], access: eligible, max_grant_minutes: 240}",
        "business_unit: pb, environments: [dev], access: eligible}",
    )
    plan = plan_document(parse_document(moved))
    groups = {diff.subject: diff for diff in plan.groups}
    assert triples(groups["aws-dw-cloud-eng"].gained) == {("222222222222", "cloud-eng", "standing")}
    assert ("222222222222", "cloud-eng", "standing") in triples(groups["aws-pb-cloud-eng"].lost)


def test_plan_of_the_current_state_is_empty() -> None:
    apply_text(SAMPLE)
    plan = plan_document(parse_document(SAMPLE))
    assert plan.is_empty
    assert plan.groups == () and plan.users == ()
    assert "No changes" in plan.render_text()


# --- Apply ----------------------------------------------------------------------------------


def test_apply_writes_tables_a_version_and_one_audit_event() -> None:
    result = apply_text(SAMPLE, actor="cli:ops", reason="initial load")

    assert result.version == 1 and result.changed
    assert BusinessUnit.objects.count() == 2
    assert Account.objects.get(account_id="222222222222").approvals_required == 2
    admin = GroupMapping.objects.get(group="aws-pb-admin")
    assert (admin.environments, admin.max_grant) == (["prod"], timedelta(minutes=240))
    version = MappingVersion.objects.get()
    assert (version.number, version.actor, version.source, version.reason) == (
        1,
        "cli:ops",
        "import",
        "initial load",
    )
    assert version.document == parse_document(SAMPLE).to_dict()
    assert version.plan["counts"]["account"] == {"add": 3, "remove": 0, "change": 0}
    event = AuditEvent.objects.get()
    assert event.event_type == "mappings.apply"
    assert event.actor == "cli:ops"
    assert (event.data["version_before"], event.data["version_after"]) == (0, 1)
    assert len(event.data["rows"]) == 2 + 3 + 2 + 3
    assert verify_chain().ok


def test_applying_the_current_state_is_a_no_op() -> None:
    apply_text(SAMPLE)
    again = apply_text(SAMPLE)
    assert again.version is None
    assert again.message == "No changes"
    assert MappingVersion.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_every_apply_invalidates_entitlements() -> None:
    now = timezone.now()
    apply_text(SAMPLE)
    before = {e.account_id for e in resolve_entitlements(["aws-pb-cloud-eng"], now=now)}
    apply_text(CHANGED)
    after = {e.account_id for e in resolve_entitlements(["aws-pb-cloud-eng"], now=now)}
    assert (before, after) == ({"111111111111", "222222222222"}, {"111111111111"})


def test_a_failure_inside_the_apply_leaves_nothing_behind() -> None:
    apply_text(SAMPLE)
    before = export_document()
    # A real database failure at the very end of the apply, after every table was written.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_version() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'version store unavailable'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_version BEFORE INSERT ON federation_mappingversion "
            "FOR EACH ROW EXECUTE FUNCTION refuse_version()"
        )
    with pytest.raises(DatabaseError, match="version store unavailable"):
        apply_text(CHANGED)
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_apply_refuses_when_the_base_version_moved() -> None:
    apply_text(SAMPLE)
    plan = plan_document(parse_document(CHANGED))
    apply_text(SAMPLE.replace("Data Warehouse", "Data Platform"))
    with pytest.raises(MappingConflict, match="from version 1 to 2"):
        apply_text(CHANGED, base_version=plan.base_version)
    assert MappingVersion.objects.count() == 2


def test_aliases_can_be_swapped() -> None:
    apply_text(SAMPLE)
    swapped = SAMPLE.replace("alias: pb-dev", "alias: tmp").replace(
        "alias: pb-prod", "alias: pb-dev"
    )
    swapped = swapped.replace("alias: tmp", "alias: pb-prod")
    apply_text(swapped)
    assert Account.objects.get(account_id="111111111111").alias == "pb-prod"
    assert Account.objects.get(account_id="222222222222").alias == "pb-dev"


def test_an_account_can_move_to_a_new_unit_while_its_old_unit_is_removed() -> None:
    apply_text(SAMPLE)
    text = SAMPLE.replace("{slug: dw, name: Data Warehouse", "{slug: data, name: Data")
    text = text.replace("business_unit: dw", "business_unit: data")
    apply_text(text)
    assert set(BusinessUnit.objects.values_list("slug", flat=True)) == {"pb", "data"}
    assert Account.objects.get(account_id="333333333333").business_unit.slug == "data"
    assert export_document() == parse_document(text).to_dict()


def test_an_empty_document_removes_everything() -> None:
    apply_text(SAMPLE)
    apply_text("business_units: []\naccounts: []\nroles: []\nmappings: []\n")
    assert not BusinessUnit.objects.exists()
    assert not GroupMapping.objects.exists()
    assert MappingVersion.objects.count() == 2


def test_removing_a_referenced_account_is_refused_cleanly(tmp_path: Path) -> None:
    apply_text(SAMPLE)
    account = Account.objects.get(account_id="222222222222")
    AccessRequestFactory(account=account, role__name="admin")
    before = export_document()
    text = replace_line(SAMPLE, 6, "")

    with pytest.raises(RemovalRefused) as refused:
        apply_text(text)
    assert "account 222222222222 (pb-prod) is still referenced by 1 access request" in str(
        refused.value
    )

    output = StringIO()
    with pytest.raises(CommandError, match="222222222222 \\(pb-prod\\) is still referenced"):
        call_command("import_mappings", write(tmp_path, text), stdout=output)
    assert "Refused" in output.getvalue()
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_removing_a_role_held_by_a_grant_is_refused() -> None:
    apply_text(SAMPLE)
    account = Account.objects.get(account_id="222222222222")
    GrantFactory(request__account=account, request__role__name="admin")
    text = replace_line(replace_line(SAMPLE, 13, ""), 10, "")
    plan = plan_document(parse_document(text))
    assert plan.blockers == (
        "role admin is still referenced by 1 access request, 1 grant; keep it in the file",
    )
    with pytest.raises(RemovalRefused):
        apply_text(text)
    assert MappingVersion.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_applies_are_serialised() -> None:
    documents = [parse_document(SAMPLE), parse_document(CHANGED)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        try:
            barrier.wait()
            apply_document(
                documents[index], actor=f"writer-{index}", source="import", now=timezone.now()
            )
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    versions = list(MappingVersion.objects.order_by("number"))
    assert [v.number for v in versions] == [1, 2]
    assert export_document() == versions[-1].document
    assert versions[1].plan["base_version"] == 1
    assert verify_chain().ok


# --- Export ---------------------------------------------------------------------------------


def test_export_then_import_is_a_no_op(tmp_path: Path) -> None:
    apply_text(
        SAMPLE + 'account_roles:\n  - {account: "222222222222", role: admin,'
        ' role_arn: "arn:aws:iam::222222222222:role/BreakGlass", max_session_minutes: 30}\n'
    )
    exported = StringIO()
    call_command("export_mappings", stdout=exported)

    output = StringIO()
    call_command("import_mappings", write(tmp_path, exported.getvalue()), stdout=output)

    assert "No changes" in output.getvalue()
    assert MappingVersion.objects.count() == 1
    assert AuditEvent.objects.count() == 1
    assert "role_arn: 'arn:aws:iam::222222222222:role/BreakGlass'" in exported.getvalue()


def test_export_is_canonical_whatever_the_input_order() -> None:
    lines = SAMPLE.splitlines()
    shuffled = "\n".join([*lines[:11], lines[13], lines[12], lines[11]]) + "\n"
    assert parse_document(shuffled).to_dict() == parse_document(SAMPLE).to_dict()
    apply_text(shuffled)
    first = dump_document_yaml()
    assert first == dump_document_yaml(parse_document(SAMPLE)).replace(
        "# Mapping file (SPEC §3.3).",
        "# Mapping file (SPEC §3.3), exported from mapping version 1.",
    )
    mappings = first.split("mappings:\n", 1)[1].splitlines()
    assert [line.split(",")[0] for line in mappings] == [
        "- {group: aws-dw-cloud-eng",
        "- {group: aws-pb-admin",
        "- {group: aws-pb-cloud-eng",
    ]


# --- Commands and rollback ------------------------------------------------------------------


def test_import_command_prints_the_plan_then_applies(tmp_path: Path) -> None:
    output = StringIO()
    call_command(
        "import_mappings", write(tmp_path, SAMPLE), "--reason", "first load", stdout=output
    )
    text = output.getvalue()
    assert "+ business unit pb" in text
    assert "Applied as mapping version 1" in text
    version = MappingVersion.objects.get()
    assert version.actor.startswith("cli:")
    assert (version.source, version.reason) == ("import", "first load")


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    apply_text(SAMPLE)
    before = export_document()
    output = StringIO()
    call_command("import_mappings", write(tmp_path, CHANGED), "--dry-run", stdout=output)
    assert "- mapping aws-dw-cloud-eng -> cloud-eng in dw" in output.getvalue()
    assert "Dry run: nothing applied." in output.getvalue()
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_import_of_a_missing_file_is_a_clean_error() -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_mappings", "/nonexistent/mappings.yaml", stdout=StringIO())


def test_rollback_restores_an_earlier_version_as_a_new_audited_version() -> None:
    apply_text(SAMPLE)
    apply_text(CHANGED)
    output = StringIO()
    call_command("rollback_mappings", "1", "--reason", "bad change", "--emergency", stdout=output)

    assert "Applied as mapping version 3" in output.getvalue()
    assert "+ mapping aws-dw-cloud-eng -> cloud-eng in dw" in output.getvalue()
    latest = MappingVersion.objects.get(number=3)
    assert latest.source == "rollback"
    assert latest.reason == "rollback to version 1: bad change"
    assert latest.document == MappingVersion.objects.get(number=1).document
    assert export_document() == latest.document
    event = AuditEvent.objects.get(event_type="mappings.rollback")
    assert (event.data["rolled_back_to"], event.data["version_before"]) == (1, 2)
    assert event.data["version_after"] == 3
    assert verify_chain().ok


def test_rollback_dry_run_changes_nothing() -> None:
    apply_text(SAMPLE)
    apply_text(CHANGED)
    before = export_document()
    output = StringIO()
    events = AuditEvent.objects.count()
    call_command("rollback_mappings", "1", "--dry-run", stdout=output)
    assert "+ mapping aws-dw-cloud-eng -> cloud-eng in dw" in output.getvalue()
    assert "Dry run: nothing applied." in output.getvalue()
    assert output.getvalue().startswith("Plan against mapping version 2:")
    assert export_document() == before
    assert MappingVersion.objects.count() == 2
    assert AuditEvent.objects.count() == events


def test_rollback_to_an_unknown_version_is_refused() -> None:
    apply_text(SAMPLE)
    with pytest.raises(VersionNotFound):
        rollback_to_version(7, actor="x", now=timezone.now())
    with pytest.raises(CommandError, match="no mapping version 7 \\(versions run from 1 to 1\\)"):
        call_command("rollback_mappings", "7", stdout=StringIO())
    assert MappingVersion.objects.count() == 1


def test_rollback_to_the_current_version_is_a_no_op() -> None:
    apply_text(SAMPLE)
    output = StringIO()
    call_command("rollback_mappings", "1", stdout=output)
    assert "No changes" in output.getvalue()
    assert MappingVersion.objects.count() == 1


def test_a_version_from_an_unknown_source_is_invalid() -> None:
    with pytest.raises(ValidationError) as raised:
        MappingVersion(
            number=1, actor="x", source="manual", document={"mappings": []}, plan={"rows": []}
        ).full_clean()
    assert set(raised.value.message_dict) == {"source"}


def test_group_mapping_clean_holds_the_row_rules() -> None:
    row = GroupMapping(
        group="g",
        environments=["prod", "dev"],
        accounts=[],
        access="standing",
        max_grant=timedelta(hours=1),
        approver_groups=["x"],
    )
    with pytest.raises(ValidationError) as raised:
        row.clean()
    assert set(raised.value.message_dict) == {"environments", "max_grant", "approver_groups"}


def test_apply_checks_the_row_rules_of_a_document_built_in_code() -> None:
    apply_text(SAMPLE)
    before = export_document()
    parsed = parse_document(SAMPLE)
    bad = replace(parsed.mappings[0], approver_groups=("aws-pb-managers",))
    assert bad.access == "standing"
    document = make_document(
        parsed.business_units, parsed.accounts, parsed.roles, (), (bad, *parsed.mappings[1:])
    )
    with pytest.raises(MappingFileInvalid, match="approver groups apply to eligible rows only"):
        apply_document(document, actor="x", source="import", now=timezone.now())
    assert export_document() == before
    assert MappingVersion.objects.count() == 1
