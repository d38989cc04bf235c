"""JSON API under /api/v1/ for the fedaccess CLI and automation (SPEC §3.4, §3.5).

Authenticated only by a personal token (``Authorization: Bearer fedat_...``), never by the
session cookie, so CSRF does not apply and a browser session cannot be ridden into the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from federation.audit.chain import record_refusal, request_ip
from federation.entitlements.resolve import resolve_entitlements
from federation.input_guard import load_json
from federation.issuance.service import InvalidIssuanceRequest, issue_session
from federation.issuance.tokens import TokenRefused, authenticate_api_token, revoke_api_token
from federation.models import (
    ACCOUNT_ID_RE,
    MAX_SESSION,
    MIN_SESSION,
    SLUG_RE,
    ApiToken,
    EntitlementAccess,
    SessionIssuance,
)
from federation.refusals import Refused, refusal_json

_ACCOUNT = re.compile(ACCOUNT_ID_RE)
_ROLE = re.compile(SLUG_RE)
_CREDENTIALS_KEYS = frozenset({"account", "role", "duration_seconds"})
# Beyond this the service's timedelta arithmetic overflows; in range, the service refuses
# anything outside MIN_SESSION..MAX_SESSION with its own (audited) 400.
_MAX_DURATION_SECONDS = 10**7


class NoSuchEndpoint(Refused):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(Refused):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


def api_method(method: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Like require_GET/require_POST, but the 405 is JSON like every other API answer."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != method and not (method == "GET" and request.method == "HEAD"):
                response = refusal_json(
                    MethodNotAllowed(f"{request.method} is not allowed here; use {method}.")
                )
                response["Allow"] = "GET, HEAD" if method == "GET" else method
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/v1/: a JSON 404, never the HTML page."""
    return refusal_json(
        NoSuchEndpoint("No such API endpoint; see /api/v1/openapi.json for the ones there are.")
    )


# A token view gets the authenticated token and the moment the request is handled at: the
# clock is read once per request, here.
TokenView = Callable[[HttpRequest, ApiToken, datetime], HttpResponse]


def token_required(view: TokenView) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, **_path: Any) -> HttpResponse:
        # Path arguments stay on request.resolver_match; the view reads them there.
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return refusal_json(TokenRefused("Send Authorization: Bearer <personal token>."))
        now = timezone.now()
        try:
            token = authenticate_api_token(value.strip(), now=now)
        except TokenRefused as refusal:
            return refusal_json(refusal)
        return view(request, token, now)

    return csrf_exempt(wrapper)


@api_method("GET")
@token_required
def entitlements(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    user = token.user
    items = resolve_entitlements(user.directory_groups, now=now, user_id=user.pk)
    body = {
        "entitlements": [
            {
                "account": e.account_id,
                "account_alias": e.account_alias,
                "business_unit": e.business_unit,
                "environment": e.environment,
                "region": e.region,
                "role": e.role,
                "access": e.access,
                "usable": e.usable,
                "max_session_seconds": int(e.max_session.total_seconds()),
                "grant_ends_at": e.grant_ends_at.isoformat() if e.grant_ends_at else None,
            }
            for e in items
        ]
    }
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


@api_method("POST")
@token_required
def console(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """``fedaccess console``: a console sign-in link (a bearer login: never cached or logged)."""
    return _issue(request, token, now, kind=SessionIssuance.Kind.CONSOLE)


@api_method("POST")
@token_required
def revoke_this_token(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """``fedaccess logout``: the presenting token revokes itself (audited like the page)."""
    revoke_api_token(token.user, token_id=token.pk, now=now, ip=request_ip(request))
    return JsonResponse({"revoked": token.prefix})


def refuse_malformed(
    request: HttpRequest, token: ApiToken, refusal: Refused, *, now: datetime
) -> HttpResponse:
    """Audit a malformed API request (they are what probing looks like) and answer it as JSON."""
    record_refusal(
        "api.request_refused",
        refusal,
        actor=token.user,
        target=request.path,
        ip=request_ip(request),
        now=now,
    )
    return refusal_json(refusal)


def _credentials_request(body: bytes) -> tuple[str, str, int | None]:
    """account, role and duration_seconds from the body, as the OpenAPI document states them.
    Raises a 400 refusal (UnsafeInput or InvalidIssuanceRequest) for anything else."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise InvalidIssuanceRequest("The body must be a JSON object.")
    unknown = sorted(set(payload) - _CREDENTIALS_KEYS)
    if unknown:
        raise InvalidIssuanceRequest(
            f"Unknown field {unknown[0]!r}; send account, role and optionally duration_seconds."
        )
    account, role = payload.get("account"), payload.get("role")
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise InvalidIssuanceRequest("account must be an AWS account id of 12 digits.")
    if not isinstance(role, str) or not _ROLE.match(role):
        raise InvalidIssuanceRequest(
            "role must be a role name: lowercase letters, digits and hyphens, 1 to 63 characters."
        )
    duration = payload.get("duration_seconds")
    if isinstance(duration, float) and duration.is_integer():
        # JSON Schema's integer: 1800.0 is one, as the document's readers (and schemathesis)
        # take it.
        duration = int(duration)
    if duration is not None and (
        not isinstance(duration, int)
        or isinstance(duration, bool)
        or not 0 < duration <= _MAX_DURATION_SECONDS
    ):
        raise InvalidIssuanceRequest(
            f"duration_seconds must be a whole number of seconds from "
            f"{int(MIN_SESSION.total_seconds())} to {int(MAX_SESSION.total_seconds())}."
        )
    return account, role, duration


@api_method("POST")
@token_required
def credentials(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    return _issue(request, token, now, kind=SessionIssuance.Kind.CLI)


def _issue(request: HttpRequest, token: ApiToken, now: datetime, *, kind: str) -> HttpResponse:
    try:
        account, role, duration = _credentials_request(request.body)
    except Refused as refusal:
        return refuse_malformed(request, token, refusal, now=now)
    try:
        issued = issue_session(
            token.user,
            account_id=account,
            role=role,
            kind=kind,
            requested=timedelta(seconds=duration) if duration is not None else None,
            now=now,
            ip=request_ip(request),
            api_token=token,
        )
    except Refused as problem:
        return refusal_json(problem)
    if kind == SessionIssuance.Kind.CONSOLE:
        expiration = issued.expires_at.isoformat().replace("+00:00", "Z")
        response = JsonResponse({"SigninUrl": issued.console_url, "Expiration": expiration})
    else:
        response = JsonResponse(issued.credentials.credential_process())
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, description in (
            (400, "Malformed request"),
            (401, "Missing, unknown, expired or revoked token"),
            (403, "Not entitled now (or only eligible, or the identity cannot name a session)"),
            (404, "No such request of yours"),
            (409, "The grant ends in less than 15 minutes; or a request for it is pending"),
            (502, "AWS refused the session"),
            (503, "No STS endpoint answered"),
        )
        if status in statuses
    }


def _request_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}},
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
                }
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
                                },
                            },
                        }
                    },
                },
            },
        },
    }


@api_method("GET")
def openapi(request: HttpRequest) -> HttpResponse:
    return JsonResponse(openapi_document())
