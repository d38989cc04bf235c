"""SCIM JSON in and out, through scim2-models (python-scim): the library parses, validates and
applies PATCH; this module only moves values between its models and our rows.

Why scim2-models (docs/scim.md): it validates resources and PatchOp messages per RFC 7643/7644
(unknown attributes refused, mutability enforced, path filters applied), parses filters, and
writes the discovery documents from the same models, so what we publish and what we accept
cannot drift apart. Okta's and Entra ID's departures from the RFC are rewritten first
(``compat.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    Error,
    ETag,
    Filter,
    Group,
    ListResponse,
    Patch,
    PatchOp,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from federation.directory import compat
from federation.directory.errors import ScimError
from federation.directory.groups import GroupFields, members_of
from federation.directory.service import UserFields, etag
from federation.models import DirectoryGroup, DirectoryUser

ScimUser = User[EnterpriseUser]
MAX_RESULTS = 1000
# Not the resource's own columns: stored attributes never hold these.
_OWN = ("id", "meta", "userName", "externalId", "active", "groups", "password", "schemas")

PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[ResourceType.from_resource(ScimUser), ResourceType.from_resource(Group)],
    config=ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="The IdP's SCIM token (manage.py scim_token --idp SLUG).",
                primary=True,
            )
        ],
    ),
)

Model = TypeVar("Model")


def scim_error(exc: Exception) -> ScimError:
    """The library's refusal (a ValidationError or SCIMException) as our ScimError."""
    if isinstance(exc, SCIMException):
        return ScimError(exc.detail or str(exc), status=exc.status, scim_type=exc.scim_type)
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        kind = str(first.get("type", ""))
        if kind == "extra_forbidden":
            return ScimError(f"Unknown attribute {where!r}.", scim_type="invalidSyntax")
        scim_type = kind.removeprefix("scim_") if kind.startswith("scim_") else "invalidValue"
        message = str(first.get("msg", "invalid value"))
        return ScimError(f"{where}: {message}" if where else message, scim_type=scim_type)
    raise exc


def _validate(model: type[Model], body: Any, context: Context) -> Model:
    try:
        return model.model_validate(body, scim_ctx=context)  # type: ignore[attr-defined, no-any-return]
    except (ValidationError, SCIMException) as exc:
        raise scim_error(exc) from None


# --- Users ----------------------------------------------------------------------------------


def parse_user(body: Any, *, replacing: bool) -> UserFields:
    context = (
        Context.RESOURCE_REPLACEMENT_REQUEST if replacing else Context.RESOURCE_CREATION_REQUEST
    )
    return user_fields(_validate(ScimUser, compat.normalise_resource(body), context))


def user_fields(user: ScimUser) -> UserFields:
    if not user.user_name or not user.user_name.strip():
        raise ScimError("userName is required.", scim_type="invalidValue")
    dumped = user.model_dump(scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    attributes = {k: v for k, v in dumped.items() if k not in _OWN}
    emails = [e for e in user.emails or [] if e.value]
    primary = next((e for e in emails if e.primary), emails[0] if emails else None)
    email = str(primary.value) if primary is not None else ""
    if not email and "@" in user.user_name:
        email = user.user_name
    return UserFields(
        user_name=user.user_name.strip(),
        external_id=(user.external_id or "").strip(),
        active=None if user.active is None else bool(user.active),
        email=email[:254],
        attributes=attributes,
    )


def user_model(entry: DirectoryUser, *, base_url: str) -> ScimUser:
    groups = [
        {"value": str(scim_id), "display": name, "$ref": f"{base_url}/Groups/{scim_id}"}
        for scim_id, name in entry.groups.order_by("display_name").values_list(
            "scim_id", "display_name"
        )
    ]
    payload: dict[str, Any] = {
        **entry.attributes,
        "id": str(entry.scim_id),
        "userName": entry.user_name,
        "active": entry.active,  # None (not stated) is left out below
        "groups": groups or None,
        "meta": {
            "resourceType": "User",
            "created": entry.created_at.isoformat(),
            "lastModified": entry.updated_at.isoformat(),
            "location": f"{base_url}/Users/{entry.scim_id}",
            "version": etag(entry.version),
        },
    }
    if entry.external_id:
        payload["externalId"] = entry.external_id
    return ScimUser.model_validate({k: v for k, v in payload.items() if v is not None})


def patched_user(entry: DirectoryUser, body: Any) -> UserFields:
    user = user_model(entry, base_url="")
    _apply_patch(PatchOp[ScimUser], body, user, resource_id=str(entry.scim_id))
    return user_fields(user)


# --- Groups ---------------------------------------------------------------------------------


def parse_group(body: Any, *, replacing: bool) -> GroupFields:
    context = (
        Context.RESOURCE_REPLACEMENT_REQUEST if replacing else Context.RESOURCE_CREATION_REQUEST
    )
    return group_fields(_validate(Group, compat.normalise_resource(body), context))


def group_fields(group: Group) -> GroupFields:
    name = (group.display_name or "").strip()
    if not name:
        raise ScimError("displayName is required.", scim_type="invalidValue")
    if len(name) > 256 or any(ord(c) < 32 for c in name):
        raise ScimError(
            "displayName is 1-256 characters without control characters.",
            scim_type="invalidValue",
        )
    members = tuple((str(m.value), str(m.display or "")) for m in group.members or [] if m.value)
    return GroupFields(
        display_name=name, external_id=(group.external_id or "").strip(), members=members
    )


def group_model(
    group: DirectoryGroup, *, base_url: str, with_members: bool = True, as_sent: bool = False
) -> Group:
    payload: dict[str, Any] = {
        "id": str(group.scim_id),
        "displayName": group.display_name,
        "meta": {
            "resourceType": "Group",
            "created": group.created_at.isoformat(),
            "lastModified": group.updated_at.isoformat(),
            "location": f"{base_url}/Groups/{group.scim_id}",
            "version": etag(group.version),
        },
    }
    if group.external_id:
        payload["externalId"] = group.external_id
    if with_members:
        members = [
            {
                "value": str(scim_id),
                "type": "User",
                "$ref": f"{base_url}/Users/{scim_id}",
                **({"display": display} if display else {}),
            }
            for scim_id, display in members_of(group, as_sent=as_sent)
        ]
        if members:
            payload["members"] = members
    return Group.model_validate(payload)


def patched_group(group: DirectoryGroup, body: Any) -> GroupFields:
    model = group_model(group, base_url="", as_sent=True)
    _apply_patch(PatchOp[Group], body, model, resource_id=str(group.scim_id))
    return group_fields(model)


# --- Shared ---------------------------------------------------------------------------------


def _apply_patch(patch_type: Any, body: Any, resource: Any, *, resource_id: str) -> None:
    patch = _validate(
        patch_type,
        compat.normalise_patch(body, resource_id=resource_id),
        Context.RESOURCE_PATCH_REQUEST,
    )
    try:
        patch.patch(resource)
    except (ValidationError, SCIMException) as exc:
        raise scim_error(exc) from None


def response_parameters(
    attributes: str | None, excluded: str | None
) -> ResponseParameters[Any] | None:
    if not attributes and not excluded:
        return None
    return _validate(
        ResponseParameters,
        {"attributes": attributes or None, "excludedAttributes": excluded or None},
        Context.DEFAULT,
    )


def dump(
    model: Any, *, context: Context, parameters: ResponseParameters[Any] | None = None
) -> dict[str, Any]:
    try:
        return model.model_dump(  # type: ignore[no-any-return]
            scim_ctx=context, response_parameters=parameters
        )
    except (ValidationError, SCIMException) as exc:
        raise scim_error(exc) from None


def list_response(
    resources: Iterable[Any],
    *,
    total: int,
    start_index: int,
    model: Any,
    parameters: ResponseParameters[Any] | None = None,
) -> dict[str, Any]:
    items = list(resources)
    response = ListResponse[model](
        total_results=total, start_index=start_index, items_per_page=len(items), resources=items
    )
    return dump(response, context=Context.SEARCH_RESPONSE, parameters=parameters)


def error_body(error: ScimError) -> dict[str, Any]:
    body = Error(status=error.status, scim_type=error.scim_type or None, detail=error.message)
    return body.model_dump()


def discovery(kind: str, *, base_url: str) -> list[dict[str, Any]] | dict[str, Any]:
    """The ServiceProviderConfig, the ResourceTypes or the Schemas, with their locations."""
    context = Context.RESOURCE_QUERY_RESPONSE
    if kind == "ServiceProviderConfig":
        assert PROVIDER.config is not None
        config = PROVIDER.config.model_dump(scim_ctx=context)
        config["meta"] = {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/ServiceProviderConfig",
        }
        return config
    if kind == "ResourceTypes":
        items = []
        for resource_type in PROVIDER.resource_types:
            dumped = resource_type.model_dump(scim_ctx=context)
            dumped["meta"] = {
                "resourceType": "ResourceType",
                "location": f"{base_url}/ResourceTypes/{dumped['id']}",
            }
            items.append(dumped)
        return items
    items = []
    for schema in PROVIDER.schemas:
        dumped = schema.model_dump(scim_ctx=context)
        dumped["meta"] = {
            "resourceType": "Schema",
            "location": f"{base_url}/Schemas/{dumped['id']}",
        }
        items.append(dumped)
    return items
