"""Pieces the OpenAPI document of /api/v1/ is built from: the error answers and small helpers."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        # With error "step_up_required": the page that signs the person in again with MFA.
        "step_up_url": {"type": "string", "format": "uri"},
    },
}


def errors(*statuses: int) -> dict[str, Any]:
    # Every API call spends rate-limit budgets (federation/edge/), and with
    # RATE_LIMIT_FAILURE=closed answers 503 while they cannot be checked.
    statuses = (*statuses, 429, 503)
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, description in (
            (400, "Malformed request; or, polling a CLI sign-in, not approved (yet)"),
            (401, "Missing, unknown, expired or revoked token"),
            (
                403,
                "Not entitled now (or only eligible, or the identity cannot name a session); "
                'or {"error": "step_up_required", "step_up_url": ...}: the role needs a fresh '
                "MFA sign-in, to be made at step_up_url in a browser; or not an approver of this "
                "request, or its requester; a CLI sign-in denied",
            ),
            (404, "No such request of yours (or that you may decide)"),
            (
                409,
                "The grant ends in less than 15 minutes; or a request for it is pending; or the "
                "role is already held; or the request is no longer pending, or you already "
                "voted on it",
            ),
            (
                429,
                "Too many calls: try again after Retry-After seconds; or break-glass used as "
                "often as allowed in the window",
            ),
            (502, "AWS refused the session"),
            (
                503,
                "No STS endpoint answered, or the rate limits cannot be checked; or too many "
                "CLI sign-ins are waiting",
            ),
        )
        if status in statuses
    }


def request_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}},
    }


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body of ``schema``."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
