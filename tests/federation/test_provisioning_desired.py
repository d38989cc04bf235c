"""The desired state of the control loop (SPEC §4): which roles the tables call for, and the
documents they carry. moto enforces none of IAM's limits or trust conditions, so the generated
documents and the validator are tested here, on their own."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.aws import sts
from federation.entitlements.resolve import Entitlement
from federation.issuance.service import session_tags
from federation.mappings import (
    MappingFileInvalid,
    apply_document,
    dump_document_yaml,
    parse_document,
)
from federation.mappings.document import AccountRoleRow
from federation.mappings.state import get_current_document
from federation.models import EntitlementAccess
from federation.provisioning import trust
from federation.provisioning.desired import (
    MANAGED_TAG,
    VERSION_TAG,
    DesiredRole,
    ProvisioningInvalid,
    desired_roles,
)
from tests.aws import MotoServer
from tests.factories import UserFactory

BROKER = "arn:aws:iam::999999999999:role/fedaccess-broker"
MOMENT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

BASE = """
business_units:
  - {slug: pb, name: Personal Banking}
  - {slug: dw, name: Data Warehouse}
accounts:
  - {id: "111111111111", alias: pb-dev, business_unit: pb, environment: dev, canary: true}
  - {id: "222222222222", alias: pb-prod, business_unit: pb, environment: prod}
  - {id: "333333333333", alias: dw-dev, business_unit: dw, environment: dev}
roles:
  - name: cloud-eng
    max_session_minutes: 120
    policies:
      dev: [arn:aws:iam::aws:policy/PowerUserAccess, "arn:aws:iam::${AccountId}:policy/pb-extra"]
      prod: [arn:aws:iam::aws:policy/ReadOnlyAccess]
  - {name: admin, privileged: true, max_session_minutes: 15}
  - {name: network-eng}
mappings:
  - {group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb, access: standing}
  - {group: aws-pb-admin, role: admin, business_unit: pb, environments: [prod], access: eligible}
"""


def _desired(text: str = BASE, **kwargs: str) -> dict[str, list[DesiredRole]]:
    return desired_roles(parse_document(text), version=7, broker_arn=kwargs.get("broker", BROKER))


def _one(roles: dict[str, list[DesiredRole]], account: str, logical: str) -> DesiredRole:
    [found] = [r for r in roles[account] if r.logical_role == logical]
    return found


def test_one_role_per_account_and_logical_role_the_rows_reach() -> None:
    roles = _desired()

    assert {a: sorted(r.logical_role for r in rs) for a, rs in roles.items()} == {
        "111111111111": ["cloud-eng"],
        "222222222222": ["admin", "cloud-eng"],  # eligible rows count too
        "333333333333": [],  # no row of dw reaches it: its managed roles would be deleted
    }
    admin = _one(roles, "222222222222", "admin")
    assert admin.arn == "arn:aws:iam::222222222222:role/admin"
    assert admin.tags == {MANAGED_TAG: "true", VERSION_TAG: "7"}


def test_trust_policy_trusts_only_the_broker_with_source_identity_and_its_tags() -> None:
    role = _one(_desired(), "222222222222", "admin")

    [statement] = role.trust_policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": BROKER}
    assert sorted(statement["Action"]) == [
        "sts:AssumeRole",
        "sts:SetSourceIdentity",
        "sts:TagSession",
    ]
    condition = statement["Condition"]
    # A session without a SourceIdentity does not match StringLike "*": it is refused.
    assert condition["StringLike"] == {"sts:SourceIdentity": "*"}
    # Survives a recreated broker role, unlike the principal (stored as its unique id).
    assert condition["StringEquals"]["aws:PrincipalArn"] == BROKER
    assert condition["StringEquals"]["aws:RequestTag/BusinessUnit"] == "pb"
    assert condition["Null"] == {"aws:RequestTag/IdP": "false"}
    assert sorted(condition["ForAllValues:StringEquals"]["aws:TagKeys"]) == [
        "AccessRequest",
        "BreakGlass",
        "BusinessUnit",
        "IdP",
        "MFA",
    ]
    assert trust.principals(role.trust_policy) == [BROKER]


def test_trust_policy_allows_only_tag_keys_the_broker_sets() -> None:
    from federation.issuance import service

    keys = {
        service.TAG_ACCESS_REQUEST,
        service.TAG_BUSINESS_UNIT,
        service.TAG_IDP,
        service.TAG_MFA,
        service.TAG_BREAK_GLASS,
    }
    assert set(trust.SESSION_TAG_KEYS) == keys


def test_business_unit_tag_condition_isolates_business_units() -> None:
    text = (
        BASE
        + "  - {group: aws-dw-cloud-eng, role: cloud-eng, business_unit: dw, access: standing}\n"
    )
    roles = _desired(text)

    pb = _one(roles, "111111111111", "cloud-eng").trust_policy
    dw = _one(roles, "333333333333", "cloud-eng").trust_policy
    tag = "aws:RequestTag/BusinessUnit"
    assert pb["Statement"][0]["Condition"]["StringEquals"][tag] == "pb"
    assert dw["Statement"][0]["Condition"]["StringEquals"][tag] == "dw"


def test_policies_follow_the_account_environment_with_account_placeholder() -> None:
    roles = _desired()

    assert _one(roles, "111111111111", "cloud-eng").policies == (
        "arn:aws:iam::111111111111:policy/pb-extra",
        "arn:aws:iam::aws:policy/PowerUserAccess",
    )
    assert _one(roles, "222222222222", "cloud-eng").policies == (
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
    )
    assert _one(roles, "222222222222", "admin").policies == ()


def test_session_length_is_the_roles_with_iams_one_hour_floor_and_overrides() -> None:
    text = BASE + (
        'account_roles:\n  - {account: "222222222222", role: cloud-eng, max_session_minutes: 480}\n'
    )
    roles = _desired(text)

    assert _one(roles, "111111111111", "cloud-eng").max_session_seconds == 7200
    assert _one(roles, "222222222222", "cloud-eng").max_session_seconds == 28800
    # 15 minutes is below IAM's MaxSessionDuration floor: the role says an hour and issuance
    # caps each session at 15 minutes.
    assert _one(roles, "222222222222", "admin").max_session_seconds == 3600


def test_a_role_arn_override_gives_name_and_path() -> None:
    text = BASE + (
        "account_roles:\n"
        '  - {account: "222222222222", role: admin, '
        "role_arn: 'arn:aws:iam::222222222222:role/people/pb/admin-prod'}\n"
    )
    admin = _one(_desired(text), "222222222222", "admin")

    assert (admin.path, admin.name) == ("/people/pb/", "admin-prod")
    assert admin.arn == "arn:aws:iam::222222222222:role/people/pb/admin-prod"


def _override(arn_tail: str) -> str:
    return BASE + (
        "account_roles:\n"
        '  - {account: "222222222222", role: admin, '
        f'role_arn: "arn:aws:iam::222222222222:role/{arn_tail}"}}\n'
    )


def test_a_role_name_over_64_characters_is_refused_naming_the_row() -> None:
    with pytest.raises(ProvisioningInvalid) as raised:
        _desired(_override("a" * 65))

    [fault] = raised.value.faults
    assert "role admin in account 222222222222 (pb-prod)" in fault
    assert "1-64 characters" in fault
    assert raised.value.code == "provisioning.invalid"


def test_a_64_character_role_name_is_accepted() -> None:
    assert _one(_desired(_override("a" * 64)), "222222222222", "admin").name == "a" * 64


def test_a_path_over_512_characters_is_refused() -> None:
    # The file's own check bounds the whole ARN; a stored or drafted row may not have it.
    document = parse_document(BASE)
    arn = "arn:aws:iam::222222222222:role/" + "p" * 520 + "/admin"
    document = replace(document, account_roles=(AccountRoleRow("222222222222", "admin", arn),))

    with pytest.raises(ProvisioningInvalid, match="role path"):
        desired_roles(document, version=1, broker_arn=BROKER)


def test_a_trust_policy_over_iams_size_limit_is_refused(settings: SettingsWrapper) -> None:
    size = trust.policy_size(trust.trust_policy(BROKER, "pb"))
    settings.ROLE_TRUST_POLICY_MAX_CHARS = size - 1

    with pytest.raises(ProvisioningInvalid, match=f"would be {size} characters, over IAM's"):
        _desired()

    settings.ROLE_TRUST_POLICY_MAX_CHARS = size
    assert _desired()


def test_default_trust_policy_fits_iams_default_limit_with_a_long_broker_arn() -> None:
    broker = "arn:aws:iam::999999999999:role/" + "b" * 64
    roles = _desired(broker=broker)
    assert trust.policy_size(_one(roles, "222222222222", "admin").trust_policy) <= 2048


def test_more_managed_policies_than_iam_attaches_are_refused(settings: SettingsWrapper) -> None:
    settings.ROLE_MANAGED_POLICIES_MAX = 1

    with pytest.raises(ProvisioningInvalid) as raised:
        _desired()

    assert raised.value.faults == (
        "role cloud-eng in account 111111111111 (pb-dev): roles[cloud-eng].policies.dev "
        "lists 2 managed policies, IAM attaches at most 1",
    )


def test_two_logical_roles_wanting_one_iam_name_are_refused() -> None:
    text = BASE + (
        "account_roles:\n"
        '  - {account: "222222222222", role: admin, '
        'role_arn: "arn:aws:iam::222222222222:role/x/Cloud-Eng"}\n'
    )
    with pytest.raises(ProvisioningInvalid, match="also wanted"):
        _desired(text)


def test_policies_and_canary_round_trip_through_the_file() -> None:
    document = parse_document(BASE)

    text = dump_document_yaml(document)

    assert "canary: true" in text
    assert parse_document(text) == document


@pytest.mark.parametrize(
    ("policy", "fault"),
    [
        ("arn:aws:iam::aws:role/x", "is not a managed policy ARN"),
        ("arn:aws:iam::12345:policy/x", "is not a managed policy ARN"),
        ("ReadOnlyAccess", "is not a managed policy ARN"),
    ],
)
def test_a_bad_policy_arn_is_refused_with_its_line(policy: str, fault: str) -> None:
    text = BASE.replace("arn:aws:iam::aws:policy/ReadOnlyAccess", policy)

    with pytest.raises(MappingFileInvalid) as raised:
        parse_document(text)

    assert [(e.line, fault in e.message) for e in raised.value.errors] == [(14, True)]


def test_unknown_environment_and_repeated_policy_are_refused() -> None:
    text = BASE.replace("prod: [arn:aws:iam::aws:policy/ReadOnlyAccess]", "staging: []")
    with pytest.raises(MappingFileInvalid, match="staging"):
        parse_document(text)
    text = BASE.replace(
        "prod: [arn:aws:iam::aws:policy/ReadOnlyAccess]",
        "prod: [arn:aws:iam::aws:policy/ReadOnlyAccess, arn:aws:iam::aws:policy/ReadOnlyAccess]",
    )
    with pytest.raises(MappingFileInvalid, match="listed twice"):
        parse_document(text)


@pytest.mark.django_db
def test_policies_and_canary_are_stored_and_read_back_from_the_tables() -> None:
    document = parse_document(BASE)

    result = apply_document(document, actor="test", source="import", now=MOMENT)

    assert get_current_document() == (result.version, document)
    again = apply_document(parse_document(BASE), actor="test", source="import", now=MOMENT)
    assert not again.changed


@pytest.mark.django_db
def test_changing_policies_is_a_planned_role_change() -> None:
    apply_document(parse_document(BASE), actor="test", source="import", now=MOMENT)
    changed = BASE.replace("ReadOnlyAccess", "ViewOnlyAccess")

    result = apply_document(parse_document(changed), actor="test", source="import", now=MOMENT)

    [change] = [c for c in result.plan.rows if c.kind == "role"]
    assert change.changed_fields == ("policies",)


def test_assumed_role_identity_maps_back_to_its_role() -> None:
    assert (
        trust.principal_from_caller("arn:aws:sts::999999999999:assumed-role/broker/i-0abc")
        == "arn:aws:iam::999999999999:role/broker"
    )
    assert trust.principal_from_caller(BROKER) == BROKER
    with pytest.raises(trust.BrokerPrincipalUnknown, match="set BROKER_PRINCIPAL_ARN"):
        trust.principal_from_caller("arn:aws:iam::999999999999:root")


@pytest.fixture
def fresh_broker(settings: SettingsWrapper) -> Iterator[None]:
    settings.BROKER_PRINCIPAL_ARN = ""
    settings.STS_ENDPOINTS = []
    settings.STS_REGIONS = ["us-east-1"]
    sts.reset_clients()
    trust.reset_broker_principal()
    yield
    sts.reset_clients()
    trust.reset_broker_principal()


def test_broker_principal_defaults_to_the_brokers_own_role(
    aws: MotoServer, fresh_broker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = boto3.client("sts", endpoint_url=aws.url).assume_role(
        RoleArn="arn:aws:iam::999999999999:role/fedaccess-broker", RoleSessionName="broker-host"
    )["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])

    assert trust.broker_principal_arn() == BROKER


def test_a_configured_broker_principal_must_be_a_role_or_user(
    settings: SettingsWrapper, fresh_broker: None
) -> None:
    settings.BROKER_PRINCIPAL_ARN = "*"
    with pytest.raises(trust.BrokerPrincipalUnknown):
        trust.broker_principal_arn()


def test_normalised_policies_compare_equal_whatever_the_formatting() -> None:
    generated = trust.trust_policy(BROKER, "pb")
    reformatted = json.loads(json.dumps(generated))
    statement = reformatted["Statement"][0]
    statement["Action"] = list(reversed(statement["Action"]))
    statement["Principal"] = {"AWS": [BROKER]}
    reformatted["Statement"] = statement

    assert trust.normalise(reformatted) == trust.normalise(generated)
    statement["Condition"]["StringLike"]["sts:SourceIdentity"] = "alice*"
    assert trust.normalise(reformatted) != trust.normalise(generated)


def _allows(policy: dict[str, Any], context: dict[str, Any]) -> bool:
    """IAM's evaluation of the operators our trust policy uses, for one request context:
    a missing key fails StringEquals/StringLike; ForAllValues holds for every value present."""
    [statement] = policy["Statement"]
    if context["aws:PrincipalArn"] != statement["Principal"]["AWS"]:
        return False
    for operator, conditions in statement["Condition"].items():
        for key, wanted_value in conditions.items():
            wanted = wanted_value if isinstance(wanted_value, list) else [wanted_value]
            value = context.get(key)
            if operator == "StringEquals" and value not in wanted:
                return False
            if operator == "StringLike" and (
                value is None or not any(fnmatch.fnmatchcase(value, w) for w in wanted)
            ):
                return False
            if operator == "Null" and (value is None) != (wanted == ["true"]):
                return False
            if operator == "ForAllValues:StringEquals" and not set(value or ()) <= set(wanted):
                return False
    return True


def _request(user: Any, entitlement: Entitlement) -> dict[str, Any]:
    """The request context of the broker's AssumeRole for this entitlement, from the tags
    issuance really sets."""
    tags = dict(session_tags(user, entitlement))
    context: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    context["aws:TagKeys"] = list(tags)
    context["aws:PrincipalArn"] = BROKER
    context["sts:SourceIdentity"] = user.email
    return context


def _entitlement(business_unit: str, request_id: int | None = None) -> Entitlement:
    return Entitlement(
        account_id="222222222222",
        account_alias="pb-prod",
        business_unit=business_unit,
        environment="prod",
        role="admin",
        role_arn="arn:aws:iam::222222222222:role/admin",
        access=EntitlementAccess.GRANT if request_id else EntitlementAccess.STANDING,
        via=(),
        max_session=timedelta(hours=1),
        privileged=True,
        request_id=request_id,
    )


@pytest.mark.django_db
def test_the_brokers_real_session_tags_satisfy_the_trust_policy_of_its_own_unit_only() -> None:
    policy = _one(_desired(), "222222222222", "admin").trust_policy
    user = UserFactory()

    assert _allows(policy, _request(user, _entitlement("pb")))
    assert _allows(policy, _request(user, _entitlement("pb", request_id=42)))
    # A session tagged for another unit, without a SourceIdentity, with an extra tag key, or
    # from another principal is refused by AWS itself.
    assert not _allows(policy, _request(user, _entitlement("dw")))
    no_identity = _request(user, _entitlement("pb"))
    del no_identity["sts:SourceIdentity"]
    assert not _allows(policy, no_identity)
    extra = _request(user, _entitlement("pb"))
    extra["aws:TagKeys"].append("CostCenter")
    assert not _allows(policy, extra)
    assert not _allows(policy, {**_request(user, _entitlement("pb")), "aws:PrincipalArn": "x"})
    no_idp = _request(user, _entitlement("pb"))
    del no_idp["aws:RequestTag/IdP"]
    assert not _allows(policy, no_idp)


@pytest.mark.django_db
def test_a_require_mfa_roles_trust_policy_refuses_sessions_without_the_brokers_mfa_tag() -> None:
    text = BASE.replace(
        "{name: admin, privileged: true, max_session_minutes: 15}",
        "{name: admin, privileged: true, max_session_minutes: 15, require_mfa: true, "
        "max_auth_age_minutes: 15}",
    )
    assert "require_mfa" in text
    roles = _desired(text)
    admin = _one(roles, "222222222222", "admin").trust_policy
    cloud_eng = _one(roles, "111111111111", "cloud-eng").trust_policy
    user = UserFactory()
    plain = _entitlement("pb")._replace(require_mfa=True)

    assert admin["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/MFA"] == "true"
    assert "aws:RequestTag/MFA" not in cloud_eng["Statement"][0]["Condition"]["StringEquals"]
    # The tags issuance really sets: with MFA shown, AWS accepts; without, AWS refuses.
    with_mfa = dict(session_tags(user, plain, mfa=True))
    assert with_mfa["MFA"] == "true"
    assert _allows(admin, _request_with(user, with_mfa))
    assert not _allows(admin, _request(user, plain))
    forged = _request(user, plain)
    forged["aws:RequestTag/MFA"] = "yes"
    forged["aws:TagKeys"].append("MFA")
    assert not _allows(admin, forged)


def _request_with(user: Any, tags: dict[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    context["aws:TagKeys"] = list(tags)
    context["aws:PrincipalArn"] = BROKER
    context["sts:SourceIdentity"] = user.email
    return context
