"""Hostile input at every public interface: a clear, audited 4xx, never a 500 (issue 12 §6-8, 11).

NUL cannot be stored by PostgreSQL and a lone surrogate has no UTF-8 form; both used to crash
queries and, worse, the audit insert of the refusal itself.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from federation.audit.chain import record_event, record_refusal, verify_chain
from federation.issuance.tokens import create_api_token
from federation.models import ApiToken, AuditEvent, MappingVersion
from federation.permissions import Forbidden
from tests.factories import UserFactory
from tests.issuance import World
from tests.mapping_samples import PB_CLOUD_ENG_DEV, mapping_yaml

pytestmark = pytest.mark.django_db

NUL_AND_SURROGATE = "a\x00b\ud800c\udfffd"


def _bearer(world: World) -> dict[str, str]:
    token = create_api_token(
        world.alice, name="t", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


# --- the audit writer (§6) ---------------------------------------------------------------


def test_the_audit_writer_stores_any_string_escaped_and_the_chain_verifies() -> None:
    event = record_event(
        f"probe{NUL_AND_SURROGATE}",
        actor=f"anonymous{NUL_AND_SURROGATE}",
        account_id="\x00",
        target=f"/x/{NUL_AND_SURROGATE}",
        data={NUL_AND_SURROGATE: [NUL_AND_SURROGATE, {"k\x00": "\ud83d"}], "n": 1},
        now=timezone.now(),
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    escaped = "a\\u0000b\\ud800c\\udfffd"
    assert stored.event_type == f"probe{escaped}"
    assert stored.actor == f"anonymous{escaped}"
    assert stored.account_id == "\\u0000"
    assert stored.target == f"/x/{escaped}"
    assert stored.data == {escaped: [escaped, {"k\\u0000": "\\ud83d"}], "n": 1}
    assert verify_chain().ok


def test_the_audit_writer_hashes_what_it_stores_when_it_cuts_a_long_target() -> None:
    record_event("probe", actor="x" * 400, target="/" + "t" * 900, now=timezone.now())
    event = AuditEvent.objects.get()
    assert len(event.target) == 500 and len(event.actor) == 320
    assert verify_chain().ok


def test_a_refusal_with_nul_in_its_target_is_recorded() -> None:
    record_refusal(
        "access.denied",
        Forbidden("no"),
        actor=None,
        target="/mappings/accounts/\x00/edit/",
        now=timezone.now(),
    )
    assert AuditEvent.objects.get().target == "/mappings/accounts/\\u0000/edit/"


# --- the HTTP edge (§6, §7) ---------------------------------------------------------------


@override_settings(ADMIN_GROUPS=["fed-admins"], AUDITOR_GROUPS=["auditors"])
@pytest.mark.parametrize(
    ("groups", "url"),
    [
        (["employees"], "/mappings/accounts/%00/edit/"),
        (["fed-admins"], "/mappings/accounts/%00/edit/"),
        (["fed-admins"], "/mappings/?group=%00"),
        (["fed-admins"], "/mappings/?account=%00"),
        (["auditors"], "/review/?account=%00"),
        (["auditors"], "/review/?bu=%00"),
        (["employees"], "/?x=%00"),
    ],
)
def test_nul_in_a_path_or_query_is_an_audited_400(groups: list[str], url: str) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(directory_groups=groups))
    response = client.get(url)
    assert response.status_code == 400
    assert b"not allowed" in response.content
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    event = AuditEvent.objects.get(event_type="request.input_refused")
    assert event.data["reason"] == "invalid_input" and "\x00" not in event.target
    assert verify_chain().ok


def test_an_anonymous_post_to_a_nul_path_is_an_audited_400() -> None:
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    response = client.post("/mappings/accounts/%00/edit/", {"alias": "x"})
    assert response.status_code == 400
    assert AuditEvent.objects.get().actor == "anonymous"


# Path, query and form edges of every page (found by probing): a 4xx, never a 500.
EDGE_URLS = [
    ("get", "/mappings/rows/99999999999999999999999/edit/"),
    ("get", "/mappings/accounts/x/remove/"),
    ("get", "/mappings/mappings/%C2%B2/remove/"),
    ("get", "/mappings/mappings/" + "9" * 5000 + "/remove/"),
    ("get", "/mappings/mappings/99999999999999999999999/remove/"),
    ("get", "/mappings/drafts/99999999999999999999999/"),
    ("post", "/mappings/drafts/99999999999999999999999/apply/"),
    ("get", "/mappings/versions/99999999999999999999999/"),
    ("post", "/tokens/99999999999999999999999/revoke/"),
    ("get", "/mappings/accounts/" + "1" * 3000 + "/edit/"),
    ("get", "/mappings/?bu=" + "x" * 3000 + "&role=" + "y" * 3000),
    ("get", "/review/?account=" + "1" * 3000),
    ("get", "/review/?bu=" + "x" * 3000 + "&format=csv"),
    ("get", "/audit/?actor=%ED%A0%80&event_type=x&seq=99999999999999999999999"),
    ("get", "/audit/?after=99999999999999999999999&before=-1&page=99999999999999999999"),
    ("get", "/audit/export.jsonl?from=2026-99-99"),
    ("post", "/sessions/"),
    ("post", "/sessions/?format=json"),
    ("get", "/login/?next=%00"),
    ("get", "/audit/?before=99999999999999999999999"),
    ("get", "/audit/?since=9999-12-31T23:59&until=0001-01-01T00:00"),
    ("get", "/audit/?since=0001-01-01T00:00"),
    ("get", "/audit/export.jsonl?since=0001-01-01T00:00&until=9999-12-31T23:59"),
    ("get", "/audit/export.jsonl?before=99999999999999999999999"),
    ("get", "/mappings/versions/0/"),
    ("post", "/mappings/versions/99999999999999999999999/"),
    ("get", "/review/?account=%ED%A0%80"),
    ("get", "/mappings/?role=%ED%A0%80&group=%F0%9F%98"),
]


@override_settings(ADMIN_GROUPS=["fed-admins"], AUDITOR_GROUPS=["auditors"])
@pytest.mark.parametrize(("method", "url"), EDGE_URLS)
def test_edge_urls_are_never_a_server_error(method: str, url: str) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(directory_groups=["fed-admins", "auditors"]))
    form = {"duration_minutes": "9" * 5000, "action": "cli", "account": "1", "role": "x"}
    response = getattr(client, method)(url, form if method == "post" else None)
    assert response.status_code < 500, (url, response.status_code)


@pytest.mark.parametrize(
    "form",
    [
        {"account": "111111111111", "role": "cloud\x00eng", "action": "cli"},
        {"account": "1111\x00", "role": "cloud-eng", "action": "cli"},
    ],
)
def test_portal_issuance_with_nul_is_an_audited_400(world: World, form: dict[str, str]) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(world.alice)
    response = client.post("/sessions/", form)
    assert response.status_code == 400
    assert AuditEvent.objects.get().event_type == "request.input_refused"


def test_the_issuance_service_audits_a_nul_role_it_refuses(world: World) -> None:
    from federation.issuance.service import InvalidIssuanceRequest, issue_session

    with pytest.raises(InvalidIssuanceRequest):
        issue_session(
            world.alice,
            account_id="1\x00",
            role="r\x00",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip=None,
        )
    assert AuditEvent.objects.get(event_type="issuance.refused").data["role"] == "r\\u0000"


@pytest.mark.parametrize(
    "form", [{"name": "laptop", "days": "1000000000"}, {"name": "lap\x00top", "days": "30"}]
)
def test_token_page_refuses_huge_lifetimes_and_nul_names(
    world: World, form: dict[str, str]
) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(world.alice)
    assert client.post("/tokens/", form).status_code == 400
    assert not ApiToken.objects.exists()


def test_the_token_service_refuses_control_characters_in_names(world: World) -> None:
    from federation.issuance.tokens import InvalidTokenRequest

    for name in ("lap\x00top", "lap\ud800", "a\nb"):
        with pytest.raises(InvalidTokenRequest):
            create_api_token(
                world.alice, name=name, lifetime=timedelta(days=1), now=timezone.now(), ip=None
            )


# --- the API (§7, §11) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 50_000,
        b'{"a":' * 50_000,
        b'{"account": "111111111111", "role": "\\ud800"}',
        b'{"account": "111111111111", "role": "cloud\\u0000eng"}',
        b'{"account": "111111111111", "role": ""}',
        b'{"account": "111111111111", "role": "cloud-eng", "\\u0000": 1}',
        b'{"account": "111111111111", "role": "cloud-eng", "extra": 1}',
        b'{"account": 111111111111, "role": "cloud-eng"}',
        b'{"account": "111111111111", "role": "cloud-eng", "duration_seconds": true}',
        b'{"account": "111111111111", "role": "cloud-eng", "duration_seconds": 100}',
        b"\xff\xfe",
    ],
)
def test_hostile_api_bodies_are_json_400s(world: World, body: bytes) -> None:
    response = Client(raise_request_exception=False).post(
        "/api/v1/credentials", body, content_type="application/json", **_bearer(world)
    )
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error", "message"}
    assert verify_chain().ok


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/api/v1/nope", 404),
        ("get", "/api/v1/entitlements/", 404),
        ("post", "/api/v2/credentials", 404),
        ("get", "/api/v1/credentials", 405),
        ("delete", "/api/v1/entitlements", 405),
        ("put", "/api/v1/openapi.json", 405),
    ],
)
def test_unknown_api_paths_and_methods_answer_json(method: str, url: str, status: int) -> None:
    response = getattr(Client(), method)(url)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"error", "message"}
    if status == 405:
        assert response["Allow"]


def test_the_openapi_document_states_the_enforced_constraints() -> None:
    schema = Client().get("/api/v1/openapi.json").json()["components"]["schemas"]
    request = schema["CredentialsRequest"]
    assert request["additionalProperties"] is False
    role = request["properties"]["role"]
    assert role["minLength"] == 1 and role["pattern"]
    assert request["properties"]["duration_seconds"]["minimum"] == 900


# --- the mapping file (§8) ----------------------------------------------------------------

BASE = mapping_yaml([PB_CLOUD_ENG_DEV])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("max_session_minutes: 60}", "max_session_minutes: !!int sixty}"),
        ("privileged: true", "privileged: !!bool maybe"),
        ("name: Data Warehouse", "name: !!timestamp 2026-13-45"),
        ("name: Data Warehouse", 'name: "Data\\0Warehouse"'),
        ("name: cloud-eng,", 'name: cloud-eng, description: "x\\0y",'),
        ("{group: aws-pb-cloud-eng,", '{group: aws-pb-cloud-eng, "k\\0": 1,'),
    ],
)
def test_import_and_dry_run_refuse_what_cannot_be_stored(
    tmp_path: object, old: str, new: str
) -> None:
    assert old in BASE
    path = f"{tmp_path}/m.yaml"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(BASE.replace(old, new, 1))
    for dry_run in (True, False):
        with pytest.raises(CommandError, match="mapping file invalid"):
            call_command("import_mappings", path, dry_run=dry_run, stdout=io.StringIO())
    assert not MappingVersion.objects.exists()


def test_import_refuses_a_reason_it_cannot_store_even_in_a_dry_run(tmp_path: object) -> None:
    path = f"{tmp_path}/m.yaml"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(BASE)
    for reason in ("x" * 501, "bad\udcff"):
        with pytest.raises(CommandError, match="--reason"):
            call_command("import_mappings", path, dry_run=True, reason=reason, stdout=io.StringIO())


@override_settings(ADMIN_GROUPS=["fed-admins"])
def test_uploading_an_unbuildable_tag_is_a_400_with_the_line() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(directory_groups=["fed-admins"]))
    upload = SimpleUploadedFile(
        "m.yaml", BASE.replace("privileged: true", "privileged: !!bool maybe").encode()
    )
    response = client.post("/mappings/upload/", {"file": upload, "reason": "try"})
    assert response.status_code == 400
    assert b"line 10" in response.content and b"maybe" in response.content
