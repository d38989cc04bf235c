"""The SCIM service provider's contract (RFC 7643/7644): CRUD, lists, filters, errors, tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from federation.directory.tokens import ScimTokenRefused, authenticate_scim_token, create_scim_token
from federation.models import AuditEvent, DirectoryUser, ScimRequest, User
from tests.directory.conftest import (
    ERROR_SCHEMA,
    GROUP_SCHEMA,
    Scim,
    okta_user,
    patch,
    scim_for,
)
from tests.factories import IdentityProviderFactory, UserFactory

pytestmark = pytest.mark.django_db

USER_HEAD = '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]'


def test_user_is_created_read_and_listed(scim: Scim) -> None:
    created = scim.post("Users", okta_user("alice@corp.example"))

    assert created.status_code == 201, created.body
    body = created.body
    assert body["userName"] == "alice@corp.example"
    assert body["active"] is True
    assert "password" not in body
    assert body["meta"]["resourceType"] == "User"
    assert created["Location"] == body["meta"]["location"]
    assert created["Content-Type"] == "application/scim+json"
    read = scim.get(f"Users/{body['id']}")
    assert read.status_code == 200
    assert read.body["name"]["givenName"] == "Alice"
    assert read["ETag"] == body["meta"]["version"]
    listed = scim.get('Users?filter=userName eq "ALICE@corp.example"')
    assert listed.body["totalResults"] == 1
    assert listed.body["Resources"][0]["id"] == body["id"]
    user = User.objects.get(idp=scim.idp, subject="alice@corp.example")
    assert user.email == "alice@corp.example" and user.is_active and user.person_id


def test_list_pages_with_start_index_and_count(scim: Scim) -> None:
    for n in range(5):
        scim.post("Users", okta_user(f"u{n}@corp.example"))

    page = scim.get("Users?startIndex=2&count=2").body

    assert page["totalResults"] == 5
    assert page["startIndex"] == 2
    assert page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["u1@corp.example", "u2@corp.example"]
    assert (
        scim.get("Users?count=0").body["Resources"] == []
        or "Resources" not in scim.get("Users?count=0").body
    )


def test_an_existing_sign_in_identity_is_the_scim_user(scim: Scim) -> None:
    signed_in = UserFactory(idp=scim.idp, subject="bob@corp.example", email="bob@corp.example")

    created = scim.post("Users", okta_user("bob@corp.example"))

    assert created.status_code == 201
    assert DirectoryUser.objects.get(scim_id=created.body["id"]).user == signed_in


def test_duplicate_user_name_is_a_uniqueness_error(scim: Scim) -> None:
    scim.post("Users", okta_user("alice@corp.example"))

    again = scim.post("Users", okta_user("Alice@Corp.Example"))

    assert again.status_code == 409
    assert again.body["scimType"] == "uniqueness"
    assert again.body["schemas"] == [ERROR_SCHEMA]
    assert DirectoryUser.objects.count() == 1


@pytest.mark.parametrize(
    ("raw", "scim_type"),
    [
        ("{not json", "invalidSyntax"),
        ('["a list"]', "invalidSyntax"),
        (
            USER_HEAD + ', "userName": "x", "shoeSize": 9}',
            "invalidSyntax",
        ),
        (USER_HEAD + "}", None),
        (
            USER_HEAD + ', "userName": "a\\u0000b"}',
            "invalidSyntax",
        ),
        (
            USER_HEAD + ', "userName": "x", "active": "maybe"}',
            None,
        ),
    ],
)
def test_malformed_user_bodies_are_scim_400s_and_store_nothing(
    scim: Scim, raw: str, scim_type: str | None
) -> None:
    response = scim.call("POST", "Users", raw=raw)

    assert response.status_code == 400, response.body
    assert response.body["schemas"] == [ERROR_SCHEMA]
    assert response.body["status"] == "400"
    if scim_type:
        assert response.body["scimType"] == scim_type
    assert response.body["detail"]
    assert not DirectoryUser.objects.exists()
    assert AuditEvent.objects.filter(event_type="scim.refused").exists()


@pytest.mark.parametrize(
    "query", ["userName eq", 'userName xx "a"', "(((", 'userName eq "a" and', "userName gt true"]
)
def test_bad_filters_are_invalid_filter(scim: Scim, query: str) -> None:
    response = scim.get(f"Users?filter={query}")

    assert response.status_code == 400
    assert response.body["scimType"] == "invalidFilter"


def test_a_filter_on_an_attribute_users_lack_matches_nothing(scim: Scim) -> None:
    # RFC 7644 §3.4.2.1: an attribute the resource type does not define evaluates to false.
    scim.post("Users", okta_user("alice@corp.example"))

    assert scim.get('Users?filter=shoeSize eq "9"').body["totalResults"] == 0


def test_other_filters_are_answered_by_matching(scim: Scim) -> None:
    scim.post("Users", okta_user("alice@corp.example"))
    scim.post("Users", okta_user("bob@corp.example", given="Bob"))

    found = scim.get('Users?filter=name.givenName sw "Bo"').body

    assert [r["userName"] for r in found["Resources"]] == ["bob@corp.example"]


def test_missing_resources_are_404_for_every_method(scim: Scim) -> None:
    missing = "2819c223-7f76-453a-919d-413861904646"
    for method, path in [
        ("GET", f"Users/{missing}"),
        ("PUT", f"Users/{missing}"),
        ("PATCH", f"Users/{missing}"),
        ("DELETE", f"Users/{missing}"),
        ("GET", "Users/not-a-uuid"),
        ("PATCH", f"Groups/{missing}"),
        ("GET", "Nothing"),
    ]:
        body = (
            okta_user("x@corp.example")
            if method == "PUT"
            else patch({"op": "replace", "path": "active", "value": False})
        )
        response = scim.call(method, path, body)
        assert response.status_code == 404, (method, path, response.body)
        assert response.body["schemas"] == [ERROR_SCHEMA]


def test_no_or_wrong_token_is_401(scim: Scim) -> None:
    for token in ["", "fedscim_nope_nope", "fedat_something"]:
        response = scim.get("Users", token=token or " ")
        assert response.status_code == 401
        assert response.body["schemas"] == [ERROR_SCHEMA]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_token_reaches_only_its_own_idps_people(scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    entra = scim_for(IdentityProviderFactory(slug="entra"))

    assert entra.get(f"Users/{alice['id']}").status_code == 404
    assert entra.get('Users?filter=userName eq "alice@corp.example"').body["totalResults"] == 0
    refused = entra.patch(
        f"Users/{alice['id']}", patch({"op": "replace", "path": "active", "value": False})
    )
    assert refused.status_code == 404
    assert entra.delete(f"Users/{alice['id']}").status_code == 404
    assert User.objects.get(subject="alice@corp.example").is_active


def test_rotating_keeps_the_old_token_for_the_grace_period(scim: Scim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SCIM_TOKEN_GRACE_HOURS = 2
    now = timezone.now()
    old = scim.token
    new = create_scim_token(scim.idp, actor="test", now=now).plaintext

    assert authenticate_scim_token(f"Bearer {old}", now=now + timedelta(hours=1)) == scim.idp
    assert authenticate_scim_token(f"Bearer {new}", now=now + timedelta(hours=3)) == scim.idp
    with pytest.raises(ScimTokenRefused):
        authenticate_scim_token(f"Bearer {old}", now=now + timedelta(hours=3))


def test_etag_mismatch_is_412_and_changes_nothing(scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body

    stale = scim.patch(
        f"Users/{alice['id']}",
        patch({"op": "replace", "path": "displayName", "value": "X"}),
        **{"If-Match": 'W/"999"'},
    )

    assert stale.status_code == 412
    assert scim.get(f"Users/{alice['id']}").body["displayName"] == "Alice Example"


def test_groups_crud_with_members(scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body

    created = scim.post(
        "Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": "aws-pb-cloud-eng",
            "members": [{"value": alice["id"]}],
        },
    )

    assert created.status_code == 201, created.body
    assert created.body["members"][0]["value"] == alice["id"]
    assert User.objects.get(subject="alice@corp.example").directory_groups == ["aws-pb-cloud-eng"]
    found = scim.get('Groups?filter=displayName eq "aws-pb-cloud-eng"&excludedAttributes=members')
    assert found.body["totalResults"] == 1
    assert "members" not in found.body["Resources"][0]
    renamed = scim.put(
        f"Groups/{created.body['id']}",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": "aws-pb-ops",
            "members": [{"value": alice["id"]}],
        },
    )
    assert renamed.status_code == 200, renamed.body
    assert User.objects.get(subject="alice@corp.example").directory_groups == ["aws-pb-ops"]
    assert scim.delete(f"Groups/{created.body['id']}").status_code == 204
    assert User.objects.get(subject="alice@corp.example").directory_groups == []


def test_a_group_member_must_be_one_of_the_idps_users(scim: Scim) -> None:
    other = scim_for(IdentityProviderFactory(slug="entra"))
    stranger = other.post("Users", okta_user("eve@corp.example")).body

    response = scim.post(
        "Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": "g", "members": [{"value": stranger["id"]}]},
    )

    assert response.status_code == 400
    assert response.body["scimType"] == "invalidValue"
    assert not scim.get('Groups?filter=displayName eq "g"').body["totalResults"]


def test_discovery_endpoints(scim: Scim) -> None:
    config = scim.get("ServiceProviderConfig").body
    assert config["patch"]["supported"] is True
    assert config["etag"]["supported"] is True
    types = scim.get("ResourceTypes").body
    assert {r["id"] for r in types["Resources"]} == {"User", "Group"}
    assert types["totalResults"] == 2
    schemas = scim.get("Schemas").body
    assert "urn:ietf:params:scim:schemas:core:2.0:User" in {s["id"] for s in schemas["Resources"]}
    assert scim.get("Schemas/urn:ietf:params:scim:schemas:core:2.0:Group").status_code == 200
    assert scim.get("ResourceTypes/User").body["endpoint"] == "/Users"


def test_every_request_is_logged_for_the_status_page(scim: Scim) -> None:
    scim.get("Users")
    scim.get("Users/nope")

    statuses = list(ScimRequest.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == [200, 404]


def test_a_patch_with_one_bad_member_applies_nothing(scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    group = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "g"}).body

    response = scim.patch(
        f"Groups/{group['id']}",
        patch(
            {"op": "replace", "path": "displayName", "value": "renamed"},
            {
                "op": "add",
                "path": "members",
                "value": [
                    {"value": alice["id"]},
                    {"value": "2819c223-7f76-453a-919d-413861904646"},
                ],
            },
        ),
    )

    assert response.status_code == 400
    after = scim.get(f"Groups/{group['id']}").body
    assert after["displayName"] == "g"
    assert "members" not in after
    assert User.objects.get(subject="alice@corp.example").directory_groups == []


def test_scim_token_command_prints_a_working_token_once(scim: Scim) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    out, err = StringIO(), StringIO()
    call_command("scim_token", "--idp", "okta", stdout=out, stderr=err)

    token = out.getvalue().strip()
    assert token.startswith("fedscim_")
    assert scim.get("Users", token=token).status_code == 200
    assert "1 older token(s)" in err.getvalue()
    assert token not in str(list(AuditEvent.objects.values_list("data", flat=True)))
    scim.post("Users", okta_user("alice@corp.example"))
    with pytest.raises(CommandError, match="cannot change"):
        call_command("scim_token", "--idp", "okta", "--subject", "externalId", stdout=out)
    with pytest.raises(CommandError, match="No IdP"):
        call_command("scim_token", "--idp", "nope", stdout=out)


def test_a_nul_in_the_query_is_a_scim_error_too(scim: Scim) -> None:
    response = scim.get("Users?filter=userName%20eq%20%22a%00b%22")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/scim+json"
    assert response.body["schemas"] == [ERROR_SCHEMA]
    assert AuditEvent.objects.filter(event_type="request.input_refused").exists()
