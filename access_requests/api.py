"""The request part of the JSON API (/api/v1/requests), for ``fedaccess request`` (issue 20).

Thin like the pages: the token decides who asks (``federation.issuance.api.token_required``),
``workflow.submit_request`` decides everything else, refusals answer in the one JSON shape.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from access_requests import queries, refusals
from access_requests.models import AccessRequest
from access_requests.services import break_glass as break_glass_service
from access_requests.services import workflow
from federation.audit.chain import request_ip
from federation.input_guard import load_json
from federation.issuance.api import NoSuchEndpoint, api_method, refuse_malformed, token_required
from federation.models import ACCOUNT_ID_RE, SLUG_RE, ApiToken
from federation.refusals import Refused, refusal_json

_ACCOUNT = re.compile(ACCOUNT_ID_RE)
_ROLE = re.compile(SLUG_RE)
_KEYS = frozenset({"account", "role", "minutes", "justification", "ticket"})
_MAX_MINUTES = 12 * 60  # the request form's bound; the mapping's cap is the service's to apply


class InvalidRequestBody(Refused):
    code = "invalid_request"
    status = 400
    title = "Invalid request"


def _body(raw: bytes) -> dict[str, Any]:
    payload = load_json(raw)
    if not isinstance(payload, dict):
        raise InvalidRequestBody("The body must be a JSON object.")
    unknown = sorted(set(payload) - _KEYS)
    if unknown:
        raise InvalidRequestBody(f"Unknown field {unknown[0]!r}.")
    account, role = payload.get("account"), payload.get("role")
    minutes, why = payload.get("minutes"), payload.get("justification")
    ticket = payload.get("ticket", "")
    if isinstance(minutes, float) and minutes.is_integer():
        minutes = int(minutes)  # JSON Schema's integer: 60.0 is one
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise InvalidRequestBody("account must be an AWS account id of 12 digits.")
    if not isinstance(role, str) or not _ROLE.match(role):
        raise InvalidRequestBody("role must be a role name.")
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes <= _MAX_MINUTES:
        raise InvalidRequestBody(f"minutes must be a whole number from 1 to {_MAX_MINUTES}.")
    if not isinstance(why, str) or not why.strip() or len(why) > 2000:
        raise InvalidRequestBody("justification must be text of 1 to 2000 characters.")
    if not isinstance(ticket, str) or len(ticket) > 200:
        raise InvalidRequestBody("ticket must be text of at most 200 characters.")
    return {
        "account_id": account,
        "role": role,
        "duration": timedelta(minutes=minutes),
        "justification": why,
        "ticket": ticket,
    }


def _described(access_request: AccessRequest) -> dict[str, Any]:
    grant = getattr(access_request, "grant", None)
    return {
        "id": access_request.pk,
        "account": access_request.account.account_id,
        "role": access_request.role.name,
        "state": access_request.state,
        "minutes": access_request.duration_minutes,
        "decide_by": access_request.decide_by.isoformat(),
        "grant_ends_at": grant.ends_at.isoformat() if grant is not None else None,
    }


@api_method("POST")
@token_required
def file_request(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """POST /api/v1/requests: file a request for (account, role); 201 with it, or a refusal."""
    try:
        fields = _body(request.body)
    except Refused as refusal:
        return refuse_malformed(request, token, refusal, now=now)
    try:
        created = workflow.submit_request(token.user, now=now, ip=request_ip(request), **fields)
    except refusals.RequestRefused as refusal:
        return refusal_json(refusal)
    return JsonResponse(_described(created), status=201)


@api_method("GET")
@token_required
def show_request(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """GET /api/v1/requests/<id>: one of my own requests (``fedaccess request --wait`` polls it)."""
    request_id = request.resolver_match.kwargs["request_id"] if request.resolver_match else 0
    found = queries.list_my_requests(token.user).filter(pk=request_id).first()
    if found is None:
        return refusal_json(NoSuchEndpoint("No such request of yours."))
    return JsonResponse(_described(found))


_BREAK_GLASS_KEYS = frozenset({"account", "role", "minutes", "justification"})


@api_method("POST")
@token_required
def break_glass(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """POST /api/v1/break-glass: activate a break-glass row at once (``fedaccess break-glass``);
    201 with the activation, or a refusal (no justification, no such row, past the limit)."""
    try:
        payload = load_json(request.body)
        if not isinstance(payload, dict):
            raise InvalidRequestBody("The body must be a JSON object.")
        unknown = sorted(set(payload) - _BREAK_GLASS_KEYS)
        if unknown:
            raise InvalidRequestBody(f"Unknown field {unknown[0]!r}.")
        account, role = payload.get("account"), payload.get("role")
        minutes, why = payload.get("minutes"), payload.get("justification", "")
        if isinstance(minutes, float) and minutes.is_integer():
            minutes = int(minutes)
        if not isinstance(account, str) or not _ACCOUNT.match(account):
            raise InvalidRequestBody("account must be an AWS account id of 12 digits.")
        if not isinstance(role, str) or not _ROLE.match(role):
            raise InvalidRequestBody("role must be a role name.")
        if minutes is not None and (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 0 < minutes <= _MAX_MINUTES
        ):
            raise InvalidRequestBody(f"minutes must be a whole number from 1 to {_MAX_MINUTES}.")
        if not isinstance(why, str):
            raise InvalidRequestBody("justification must be text.")
    except Refused as refusal:
        return refuse_malformed(request, token, refusal, now=now)
    try:
        grant = break_glass_service.activate_break_glass(
            token.user,
            account_id=account,
            role=role,
            justification=why,
            duration=timedelta(minutes=minutes) if minutes is not None else None,
            now=now,
            ip=request_ip(request),
        )
    except refusals.RequestRefused as refusal:
        return refusal_json(refusal)
    return JsonResponse(
        {
            "request_id": grant.request_id,
            "grant_id": grant.pk,
            "account": account,
            "role": role,
            "grant_ends_at": grant.ends_at.isoformat(),
        },
        status=201,
    )
