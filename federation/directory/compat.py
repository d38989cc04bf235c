"""Okta's and Entra ID's SCIM dialects, made standard before scim2-models reads them.

scim2-models parses and applies RFC 7644 PATCH strictly; the two IdPs that matter most send a
few things the RFC does not (docs/scim.md lists the sources):

* Entra ID capitalises ops (``"Replace"``) and sends booleans as strings (``"False"``).
* Entra ID removes group members with ``{"op": "Remove", "path": "members", "value":
  [{"value": "<id>"}]}`` (RFC 7644 wants the member named by a filter in the path instead).
* Okta's group ``replace`` without a path carries the group's own ``id`` in its value, and
  its user PATCH is ``{"op": "replace", "value": {"active": false}}``.

Each rewrite keeps the meaning the IdP documents; anything else is passed through unchanged and
refused, if wrong, by the library.
"""

from __future__ import annotations

from typing import Any

from federation.directory.errors import ScimError

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_BOOLEANS = {"true": True, "false": False}


def normalise_resource(body: Any) -> dict[str, Any]:
    """A POST or PUT body with Entra's string booleans made booleans."""
    if not isinstance(body, dict):
        raise ScimError("The body must be a JSON object.", scim_type="invalidSyntax")
    return {
        key: _boolean(value) if key.lower() == "active" else value for key, value in body.items()
    }


def normalise_patch(body: Any, *, resource_id: str) -> dict[str, Any]:
    """A PatchOp body in RFC 7644 form (see the module docstring for what is rewritten)."""
    if not isinstance(body, dict):
        raise ScimError("The body must be a JSON object.", scim_type="invalidSyntax")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise ScimError(
            "A PATCH carries Operations: a list of one or more operations.",
            scim_type="invalidSyntax",
        )
    rewritten: list[Any] = []
    for operation in operations:
        rewritten.extend(_operation(operation, resource_id))
    return {
        **{k: v for k, v in body.items() if k not in ("Operations", "operations")},
        "schemas": body.get("schemas") or [PATCH_SCHEMA],
        "Operations": rewritten,
    }


def _operation(operation: Any, resource_id: str) -> list[Any]:
    if not isinstance(operation, dict):
        return [operation]  # the library names the fault
    operation = dict(operation)
    op = operation.get("op")
    if isinstance(op, str):
        operation["op"] = op = op.lower()
    path = operation.get("path")
    value = operation.get("value")
    if isinstance(path, str) and path.lower() == "active":
        operation["value"] = _boolean(value)
    if isinstance(value, dict):
        value = {
            key: _boolean(item) if key.lower() == "active" else item for key, item in value.items()
        }
        if path is None and op == "replace" and str(value.get("id", "")) == resource_id:
            # Okta: the group's own id rides along in a path-less replace; it changes nothing.
            value.pop("id")
        operation["value"] = value
    if (
        op == "remove"
        and isinstance(path, str)
        and path.lower() == "members"
        and isinstance(value, list)
    ):
        # Entra ID: one remove naming the members in its value, rather than in the path.
        members = [
            m["value"] for m in value if isinstance(m, dict) and isinstance(m.get("value"), str)
        ]
        if len(members) != len(value):
            raise ScimError(
                "Each member to remove is an object with a string value.",
                scim_type="invalidValue",
            )
        return [
            {"op": "remove", "path": f"members[value eq {_quoted(member)}]"} for member in members
        ]
    return [operation]


def _boolean(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    return value


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
