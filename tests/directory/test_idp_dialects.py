"""Okta's and Entra ID's provisioning sequences, replayed as their public documentation shows them
(Okta: "SCIM 2.0 protocol reference"; Microsoft: "Tutorial: Develop and plan provisioning for a
SCIM endpoint in Microsoft Entra ID", its request/response examples)."""

from __future__ import annotations

import pytest

from federation.models import AuditEvent, Leaver, User
from tests.directory.conftest import GROUP_SCHEMA, USER_SCHEMA, Scim, okta_user, patch, scim_for
from tests.factories import IdentityProviderFactory

pytestmark = pytest.mark.django_db

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_okta_user_lifecycle(scim: Scim) -> None:
    # Okta first looks the user up, then creates it.
    probe = scim.get('Users?filter=userName eq "dora@corp.example"&startIndex=1&count=100')
    assert probe.status_code == 200
    assert probe.body["totalResults"] == 0
    assert probe.body["Resources"] == [] or "Resources" not in probe.body
    dora = scim.post("Users", okta_user("dora@corp.example", given="Dora")).body
    # Profile update: Okta PUTs the whole user, id included.
    replaced = scim.put(
        f"Users/{dora['id']}",
        {**okta_user("dora@corp.example", given="Dorothy"), "id": dora["id"]},
    )
    assert replaced.status_code == 200, replaced.body
    assert replaced.body["name"]["givenName"] == "Dorothy"
    # Deactivation: a path-less replace of active.
    off = scim.patch(f"Users/{dora['id']}", patch({"op": "replace", "value": {"active": False}}))
    assert off.status_code == 200, off.body
    assert off.body["active"] is False
    assert not User.objects.get(subject="dora@corp.example").is_active
    assert Leaver.objects.get().kind == "deactivated"
    # Reactivation brings the identity back (it starts from nothing: no tokens, no sessions).
    on = scim.patch(f"Users/{dora['id']}", patch({"op": "replace", "value": {"active": True}}))
    assert on.body["active"] is True
    assert User.objects.get(subject="dora@corp.example").is_active


def test_okta_group_push(scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    bob = scim.post("Users", okta_user("bob@corp.example", given="Bob")).body
    group = scim.post(
        "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "aws-pb-cloud-eng", "members": []}
    ).body
    gid = group["id"]

    added = scim.patch(
        f"Groups/{gid}",
        patch(
            {
                "op": "add",
                "path": "members",
                "value": [
                    {"value": alice["id"], "display": "alice@corp.example"},
                    {"value": bob["id"], "display": "bob@corp.example"},
                ],
            }
        ),
    )
    assert added.status_code == 200, added.body
    # Okta's rename: a path-less replace whose value carries the group's own id.
    renamed = scim.patch(
        f"Groups/{gid}",
        patch({"op": "replace", "value": {"id": gid, "displayName": "aws-pb-ops"}}),
    )
    assert renamed.status_code == 200, renamed.body
    assert renamed.body["displayName"] == "aws-pb-ops"
    removed = scim.patch(
        f"Groups/{gid}", patch({"op": "remove", "path": f'members[value eq "{bob["id"]}"]'})
    )
    assert removed.status_code == 200
    assert [m["value"] for m in removed.body["members"]] == [alice["id"]]
    assert User.objects.get(subject="alice@corp.example").directory_groups == ["aws-pb-ops"]
    assert User.objects.get(subject="bob@corp.example").directory_groups == []
    assert scim.delete(f"Groups/{gid}").status_code == 204


def test_okta_replace_carrying_another_id_is_refused(scim: Scim) -> None:
    group = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "g"}).body

    response = scim.patch(
        f"Groups/{group['id']}",
        patch(
            {
                "op": "replace",
                "value": {"id": "00000000-0000-0000-0000-000000000000", "displayName": "h"},
            }
        ),
    )

    assert response.status_code == 400
    assert response.body["scimType"] == "mutability"
    assert scim.get(f"Groups/{group['id']}").body["displayName"] == "g"


def entra_user(upn: str, object_id: str) -> dict[str, object]:
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": object_id,
        "userName": upn,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": upn}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Erin Entra", "familyName": "Entra", "givenName": "Erin"},
        "roles": [],
        ENTERPRISE: {"department": "Payments", "employeeNumber": "1234"},
    }


def test_entra_user_lifecycle_with_upn_and_string_booleans() -> None:
    scim = scim_for(IdentityProviderFactory(slug="entra"))
    upn = "erin@corp.onmicrosoft.com"
    assert scim.get(f'Users?filter=userName eq "{upn}"').body["totalResults"] == 0
    created = scim.post("Users", entra_user(upn, "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"))
    assert created.status_code == 201, created.body
    erin = created.body
    assert erin[ENTERPRISE]["department"] == "Payments"
    # Entra also looks users up by externalId (its matching attribute, objectId).
    found = scim.get('Users?filter=externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"')
    assert found.body["totalResults"] == 1
    updated = scim.patch(
        f"Users/{erin['id']}",
        patch(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "e@corp.example"},
            {"op": "Replace", "path": "name.familyName", "value": "Updated"},
            {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Risk"},
        ),
    )
    assert updated.status_code == 200, updated.body
    assert updated.body["name"]["familyName"] == "Updated"
    assert updated.body[ENTERPRISE]["department"] == "Risk"
    # Entra's disable: capitalised op, the boolean as a string.
    disabled = scim.patch(
        f"Users/{erin['id']}", patch({"op": "Replace", "path": "active", "value": "False"})
    )
    assert disabled.status_code == 200, disabled.body
    assert disabled.body["active"] is False
    assert not User.objects.get(subject=upn).is_active
    assert AuditEvent.objects.filter(event_type="directory.deactivated").exists()
    # Entra deletes after the soft delete.
    assert scim.delete(f"Users/{erin['id']}").status_code == 204


def test_entra_group_membership() -> None:
    scim = scim_for(IdentityProviderFactory(slug="entra"))
    erin = scim.post("Users", entra_user("erin@corp.example", "1")).body
    finn = scim.post("Users", entra_user("finn@corp.example", "2")).body
    group = scim.post(
        "Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "aws-pb-admin",
            "meta": {"resourceType": "Group"},
        },
    )
    assert group.status_code == 201, group.body
    gid = group.body["id"]
    # Entra reads groups without their members.
    read = scim.get(f"Groups/{gid}?excludedAttributes=members")
    assert read.status_code == 200 and "members" not in read.body
    added = scim.patch(
        f"Groups/{gid}",
        patch(
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": erin["id"]}, {"$ref": None, "value": finn["id"]}],
            }
        ),
    )
    assert added.status_code == 200, added.body
    # Entra's membership probe.
    probe = scim.get(
        f'Groups?filter=id eq "{gid}" and members[value eq "{erin["id"]}"]'
        "&excludedAttributes=members"
    )
    assert probe.body["totalResults"] == 1
    # Entra's old-style removal: the member in the value, not in the path.
    removed = scim.patch(
        f"Groups/{gid}",
        patch({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": erin["id"]}]}),
    )
    assert removed.status_code == 200, removed.body
    assert [m["value"] for m in removed.body["members"]] == [finn["id"]]
    probe = scim.get(f'Groups?filter=members[value eq "{erin["id"]}"]')
    assert probe.body["totalResults"] == 0
    assert User.objects.get(subject="erin@corp.example").directory_groups == []
    assert User.objects.get(subject="finn@corp.example").directory_groups == ["aws-pb-admin"]
    # A rename changes every member's group name.
    renamed = scim.patch(
        f"Groups/{gid}", patch({"op": "Replace", "path": "displayName", "value": "aws-dw-admin"})
    )
    assert renamed.status_code == 200
    assert User.objects.get(subject="finn@corp.example").directory_groups == ["aws-dw-admin"]


def test_an_idp_registered_on_external_id_matches_sign_ins_on_it() -> None:
    idp = IdentityProviderFactory(slug="entra", config={"scim_subject": "externalId"})
    scim = scim_for(idp)

    created = scim.post("Users", entra_user("gail@corp.example", "oid-123"))
    missing = scim.post("Users", {**entra_user("hal@corp.example", ""), "externalId": None})

    assert created.status_code == 201
    assert User.objects.get(idp=idp, subject="oid-123").email == "gail@corp.example"
    assert missing.status_code == 400
    assert "externalId" in missing.body["detail"]


def test_patch_with_bad_operations_is_a_scim_400(scim: Scim) -> None:
    alice = scim.post("Users", okta_user("alice@corp.example")).body
    for body in [
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []},
        {"Operations": "nope"},
        patch({"op": "explode", "path": "active", "value": False}),
        patch({"op": "replace", "path": "shoeSize", "value": 9}),
        patch({"op": "replace", "path": "active", "value": "perhaps"}),
        patch({"op": "remove", "path": "userName"}),
        patch({"op": "replace", "path": 'emails[type eq "work"', "value": "x"}),
    ]:
        response = scim.patch(f"Users/{alice['id']}", body)
        assert 400 <= response.status_code < 500, (body, response.body)
        assert response.body["detail"]
    read = scim.get(f"Users/{alice['id']}").body
    assert read["active"] is True and read["userName"] == "alice@corp.example"
