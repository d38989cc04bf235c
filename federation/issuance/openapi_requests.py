"""The OpenAPI paths of requests, approvals, break-glass and the CLI's browser sign-in."""

from __future__ import annotations

from typing import Any

from federation.issuance.openapi_parts import REQUEST_ID, errors, json_response, request_response
from federation.models import ACCOUNT_ID_RE, SLUG_RE


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
                    "200": json_response(device_started, "Show the user code; poll /device/token"),
                    **errors(400, 503),
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
                    "200": json_response(device_token, "The token, handed out once"),
                    **errors(400, 403),
                },
            }
        },
        "/requests/{request_id}/cancel": {
            "post": {
                "operationId": "cancelRequest",
                "summary": "Withdraw a pending request of mine",
                "parameters": [REQUEST_ID],
                "responses": {
                    "200": request_response("The request, cancelled"),
                    **errors(401, 403, 404, 409),
                },
            }
        },
        "/approvals": {
            "get": {
                "operationId": "listApprovals",
                "summary": "Pending requests I may decide and have not voted on, oldest first",
                "responses": {
                    "200": json_response(waiting, "Requests waiting for me"),
                    **errors(401),
                },
            }
        },
        "/approvals/{request_id}/decision": {
            "post": {
                "operationId": "decideRequest",
                "summary": "Approve or deny a request, with an optional comment the requester sees",
                "parameters": [REQUEST_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}
                    },
                },
                "responses": {
                    "200": json_response(
                        decided, "The vote is recorded; state is the request's now"
                    ),
                    **errors(400, 401, 403, 404, 409),
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

VOTE = {
    "type": "object",
    "required": ["approver", "decision", "comment", "at"],
    "properties": {
        "approver": {"type": "string"},
        "decision": {"enum": ["approve", "deny"]},
        "comment": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
    },
}


def request_paths() -> dict[str, Any]:
    return {
        "/requests": {
            "get": {
                "operationId": "listRequests",
                "summary": "My requests, newest first (the latest 100)",
                "responses": {
                    "200": json_response(_LISTED, "My requests"),
                    **errors(401),
                },
            },
            "post": {
                "operationId": "fileRequest",
                "summary": "Ask for time-bound access to a role I am eligible for",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewRequest"}}
                    },
                },
                "responses": {
                    "201": request_response("The request, pending"),
                    **errors(400, 401, 403, 409),
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
                    "200": request_response("The request"),
                    **errors(401, 404),
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
                    **errors(400, 401, 403, 409, 429),
                },
            }
        },
        **_request_paths(),
    }
