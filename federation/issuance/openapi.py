"""The OpenAPI document of /api/v1/ (served at /api/v1/openapi.json): every constraint the
server enforces is stated here, and schemathesis checks the server against it in the suite."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from federation.models import ACCOUNT_ID_RE, MAX_SESSION, MIN_SESSION, SLUG_RE, EntitlementAccess

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        # With error "step_up_required": the page that signs the person in again with MFA.
        "step_up_url": {"type": "string", "format": "uri"},
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
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


def _request_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _request_paths() -> dict[str, Any]:
    """Listing and cancelling my requests, and the approvers' list and decision (issue 20)."""
    waiting = {
        "type": "object",
        "required": ["requests"],
        "properties": {
            "requests": {"type": "array", "items": {"$ref": "#/components/schemas/Waiting"}}
        },
    }
    decided = {
        "type": "object",
        "required": ["id", "state", "decision", "comment"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string"},
            "decision": {"enum": ["approve", "deny"]},
            "comment": {"type": "string"},
        },
    }
    device_start = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"client": {"type": "string", "maxLength": 100}},
    }
    device_started = {
        "type": "object",
        "required": ["device_code", "user_code", "verification_uri", "expires_in", "interval"],
        "properties": {
            "device_code": {"type": "string"},
            "user_code": {"type": "string"},
            "verification_uri": {"type": "string"},
            "verification_uri_complete": {"type": "string"},
            "expires_in": {"type": "integer"},
            "interval": {"type": "integer"},
        },
    }
    device_poll = {
        "type": "object",
        "required": ["device_code"],
        "additionalProperties": False,
        "properties": {"device_code": {"type": "string", "minLength": 1, "maxLength": 100}},
    }
    device_token = {
        "type": "object",
        "required": ["token", "expires_at"],
        "properties": {
            "token": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "/device/start": {
            "post": {
                "operationId": "startDeviceLogin",
                "summary": "Start a browser sign-in for the CLI (no token needed)",
                "security": [],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": device_start}},
                },
                "responses": {
                    "200": _json(device_started, "Show the user code; poll /device/token"),
                    **_errors(400, 503),
                },
            }
        },
        "/device/token": {
            "post": {
                "operationId": "pollDeviceLogin",
                "summary": "The token once the person approved the code on /device/ "
                "(error authorization_pending until then; access_denied, expired_token, "
                "invalid_grant)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": device_poll}},
                },
                "responses": {
                    "200": _json(device_token, "The token, handed out once"),
                    **_errors(400, 403),
                },
            }
        },
        "/requests/{request_id}/cancel": {
            "post": {
                "operationId": "cancelRequest",
                "summary": "Withdraw a pending request of mine",
                "parameters": [_REQUEST_ID],
                "responses": {
                    "200": _request_response("The request, cancelled"),
                    **_errors(401, 403, 404, 409),
                },
            }
        },
        "/approvals": {
            "get": {
                "operationId": "listApprovals",
                "summary": "Pending requests I may decide and have not voted on, oldest first",
                "responses": {"200": _json(waiting, "Requests waiting for me"), **_errors(401)},
            }
        },
        "/approvals/{request_id}/decision": {
            "post": {
                "operationId": "decideRequest",
                "summary": "Approve or deny a request, with an optional comment the requester sees",
                "parameters": [_REQUEST_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}
                    },
                },
                "responses": {
                    "200": _json(decided, "The vote is recorded; state is the request's now"),
                    **_errors(400, 401, 403, 404, 409),
                },
            }
        },
    }


_LISTED = {
    "type": "object",
    "required": ["requests"],
    "properties": {
        "requests": {"type": "array", "items": {"$ref": "#/components/schemas/Request"}}
    },
}

_VOTE = {
    "type": "object",
    "required": ["approver", "decision", "comment", "at"],
    "properties": {
        "approver": {"type": "string"},
        "decision": {"enum": ["approve", "deny"]},
        "comment": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fedaccess API",
            "version": "1",
            "description": "AWS role sessions for the signed-in directory identity. "
            "Authenticate with a personal token from the portal's API tokens page.",
        },
        "servers": [{"url": f"{settings.BASE_URL}/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/entitlements": {
                "get": {
                    "operationId": "listEntitlements",
                    "summary": "The accounts and roles I may use or request now",
                    "responses": {
                        "200": {
                            "description": "Entitlements",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Entitlements"}
                                }
                            },
                        },
                        **_errors(401),
                    },
                }
            },
            "/credentials": {
                "post": {
                    "operationId": "issueCredentials",
                    "summary": "Issue an AWS role session (credential_process shape)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CredentialsRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Temporary credentials; never cache them in shared "
                            "caches (Cache-Control: no-store).",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Credentials"}
                                }
                            },
                        },
                        **_errors(400, 401, 403, 409, 502, 503),
                    },
                }
            },
            "/console": {
                "post": {
                    "operationId": "openConsole",
                    "summary": "A one-time AWS console sign-in link for an account and role",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CredentialsRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "A bearer sign-in link: open it at once, share it "
                            "never (Cache-Control: no-store).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["SigninUrl", "Expiration"],
                                        "properties": {
                                            "SigninUrl": {"type": "string"},
                                            "Expiration": {"type": "string", "format": "date-time"},
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(400, 401, 403, 409, 502, 503),
                    },
                }
            },
            "/requests": {
                "get": {
                    "operationId": "listRequests",
                    "summary": "My requests, newest first (the latest 100)",
                    "responses": {
                        "200": _json(_LISTED, "My requests"),
                        **_errors(401),
                    },
                },
                "post": {
                    "operationId": "fileRequest",
                    "summary": "Ask for time-bound access to a role I am eligible for",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _request_response("The request, pending"),
                        **_errors(400, 401, 403, 409),
                    },
                },
            },
            "/requests/{request_id}": {
                "get": {
                    "operationId": "showRequest",
                    "summary": "One of my requests, with its state and any grant's end",
                    "parameters": [
                        {
                            "name": "request_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    ],
                    "responses": {
                        "200": _request_response("The request"),
                        **_errors(401, 404),
                    },
                }
            },
            "/break-glass": {
                "post": {
                    "operationId": "activateBreakGlass",
                    "summary": "Take a break-glass role at once; approvers and security are told "
                    "and someone else reviews it afterwards",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["account", "role", "justification"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "account": {"type": "string", "pattern": ACCOUNT_ID_RE},
                                        "role": {"type": "string", "pattern": SLUG_RE},
                                        "justification": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 2000,
                                        },
                                        "minutes": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "maximum": 720,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "The grant, active now",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": [
                                            "request_id",
                                            "grant_id",
                                            "account",
                                            "role",
                                            "grant_ends_at",
                                        ],
                                        "properties": {
                                            "request_id": {"type": "integer"},
                                            "grant_id": {"type": "integer"},
                                            "account": {"type": "string"},
                                            "role": {"type": "string"},
                                            "grant_ends_at": {
                                                "type": "string",
                                                "format": "date-time",
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(400, 401, 403, 409, 429),
                    },
                }
            },
            **_request_paths(),
            "/token/revoke": {
                "post": {
                    "operationId": "revokeThisToken",
                    "summary": "Revoke the token this request presents (fedaccess logout)",
                    "responses": {
                        "200": {
                            "description": "Revoked; the token is refused from now on",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["revoked"],
                                        "properties": {"revoked": {"type": "string"}},
                                    }
                                }
                            },
                        },
                        **_errors(401),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR_SCHEMA,
                "CredentialsRequest": {
                    "type": "object",
                    "required": ["account", "role"],
                    "additionalProperties": False,
                    "properties": {
                        "account": {"type": "string", "pattern": ACCOUNT_ID_RE},
                        "role": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 63,
                            "pattern": SLUG_RE,
                        },
                        "duration_seconds": {
                            "type": "integer",
                            "minimum": int(MIN_SESSION.total_seconds()),
                            "maximum": int(MAX_SESSION.total_seconds()),
                        },
                    },
                },
                "NewRequest": {
                    "type": "object",
                    "required": ["account", "role", "minutes", "justification"],
                    "additionalProperties": False,
                    "properties": {
                        "account": {"type": "string", "pattern": ACCOUNT_ID_RE},
                        "role": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 63,
                            "pattern": SLUG_RE,
                        },
                        "minutes": {"type": "integer", "minimum": 1, "maximum": 720},
                        "justification": {"type": "string", "minLength": 1, "maxLength": 2000},
                        "ticket": {"type": "string", "maxLength": 200},
                    },
                },
                "Request": {
                    "type": "object",
                    "required": ["id", "account", "role", "state", "minutes", "decide_by"],
                    "properties": {
                        "id": {"type": "integer"},
                        "account": {"type": "string"},
                        "role": {"type": "string"},
                        "state": {"type": "string"},
                        "minutes": {"type": "integer"},
                        "decide_by": {"type": "string", "format": "date-time"},
                        "grant_ends_at": {"type": ["string", "null"], "format": "date-time"},
                        "grant_state": {"enum": ["active", "expired", "revoked", None]},
                        "revoked_by": {"type": ["string", "null"]},
                        "revoke_reason": {"type": ["string", "null"]},
                        "votes": {"type": "array", "items": _VOTE},
                    },
                },
                "Waiting": {
                    "allOf": [{"$ref": "#/components/schemas/Request"}],
                    "type": "object",
                    "required": ["requester", "justification", "approvals_required"],
                    "properties": {
                        "requester": {"type": "string"},
                        "account_alias": {"type": "string"},
                        "business_unit": {"type": "string"},
                        "environment": {"enum": ["dev", "test", "prod"]},
                        "justification": {"type": "string"},
                        "ticket": {"type": "string"},
                        "approvals_required": {"type": "integer"},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "Decision": {
                    "type": "object",
                    "required": ["decision"],
                    "additionalProperties": False,
                    "properties": {
                        "decision": {"enum": ["approve", "deny"]},
                        "comment": {"type": "string", "maxLength": 2000},
                    },
                },
                "Credentials": {
                    "type": "object",
                    "required": [
                        "Version",
                        "AccessKeyId",
                        "SecretAccessKey",
                        "SessionToken",
                        "Expiration",
                    ],
                    "properties": {
                        "Version": {"const": 1},
                        "AccessKeyId": {"type": "string"},
                        "SecretAccessKey": {"type": "string"},
                        "SessionToken": {"type": "string"},
                        "Expiration": {"type": "string", "format": "date-time"},
                    },
                },
                "Entitlements": {
                    "type": "object",
                    "required": ["entitlements"],
                    "properties": {
                        "entitlements": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "account": {"type": "string"},
                                    "account_alias": {"type": "string"},
                                    "business_unit": {"type": "string"},
                                    "environment": {"enum": ["dev", "test", "prod"]},
                                    "region": {"type": "string"},
                                    "role": {"type": "string"},
                                    "access": {"enum": EntitlementAccess.values},
                                    "usable": {"type": "boolean"},
                                    "max_session_seconds": {"type": "integer"},
                                    "grant_ends_at": {
                                        "type": ["string", "null"],
                                        "format": "date-time",
                                    },
                                    "require_mfa": {"type": "boolean"},
                                    "break_glass": {"type": "boolean"},
                                },
                            },
                        }
                    },
                },
            },
        },
    }
