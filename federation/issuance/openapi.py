"""The OpenAPI document of /api/v1/ (served at /api/v1/openapi.json): every constraint the
server enforces is stated here, and schemathesis checks the server against it in the suite."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from federation.issuance.openapi_parts import ERROR_SCHEMA, errors, json_body
from federation.issuance.openapi_requests import VOTE, request_paths
from federation.models import ACCOUNT_ID_RE, MAX_SESSION, MIN_SESSION, SLUG_RE, EntitlementAccess


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
                        **errors(401),
                    },
                }
            },
            "/credentials": {
                "post": {
                    "operationId": "issueCredentials",
                    "summary": "Issue an AWS role session (credential_process shape)",
                    "requestBody": json_body({"$ref": "#/components/schemas/CredentialsRequest"}),
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
                        **errors(400, 401, 403, 409, 502, 503),
                    },
                }
            },
            "/console": {
                "post": {
                    "operationId": "openConsole",
                    "summary": "A one-time AWS console sign-in link for an account and role",
                    "requestBody": json_body({"$ref": "#/components/schemas/CredentialsRequest"}),
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
                        **errors(400, 401, 403, 409, 502, 503),
                    },
                }
            },
            **request_paths(),
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
                        **errors(401),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": ERROR_SCHEMA,
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
                        "votes": {"type": "array", "items": VOTE},
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
