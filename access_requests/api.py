"""The request part of the JSON API, for ``fedaccess request`` and approvers' scripts (issue 20):
/api/v1/requests (file, list, show, cancel) and /api/v1/approvals (list what I may decide, decide).

Thin like the pages: the token decides who asks (``federation.issuance.api.token_required``),
``workflow.submit_request`` decides everything else, refusals answer in the one JSON shape.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from access_requests import queries, refusals
from access_requests.models import AccessRequest, Approval
from access_requests.services import break_glass as break_glass_service
from access_requests.services import workflow
from federation.audit.chain import request_ip
from federation.input_guard import load_json
from federation.issuance.api import (
    MethodNotAllowed,
    NoSuchEndpoint,
    api_method,
    refuse_malformed,
    token_required,
)
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
    revoked_by = revoke_reason = None
    if grant is not None and grant.state == grant.State.REVOKED:
        revoked_by = grant.revoked_by.label if grant.revoked_by else "system"
        revoke_reason = grant.revoke_reason
    return {
        "id": access_request.pk,
        "account": access_request.account.account_id,
        "role": access_request.role.name,
        "state": access_request.state,
        "minutes": access_request.duration_minutes,
        "decide_by": access_request.decide_by.isoformat(),
        "grant_ends_at": grant.ends_at.isoformat() if grant is not None else None,
        "grant_state": grant.state if grant is not None else None,
        "revoked_by": revoked_by,
        "revoke_reason": revoke_reason,
        "votes": [_vote(vote) for vote in access_request.approvals.all()],
    }


def _vote(vote: Approval) -> dict[str, Any]:
    return {
        "approver": vote.approver.label,
        "decision": vote.decision,
        "comment": vote.comment,
        "at": vote.at.isoformat(),
    }


def _pk(request: HttpRequest, name: str) -> int:
    return int(request.resolver_match.kwargs[name]) if request.resolver_match else 0


@csrf_exempt  # token only (token_required below); a browser session cannot ride it
def requests_collection(request: HttpRequest, **_path: Any) -> HttpResponse:
    """/api/v1/requests: GET lists mine, POST files one (one path, two methods)."""
    if request.method in ("GET", "HEAD"):
        return list_requests(request)
    if request.method == "POST":
        return file_request(request)
    response = refusal_json(
        MethodNotAllowed(f"{request.method} is not allowed here; use GET or POST.")
    )
    response["Allow"] = "GET, HEAD, POST"
    return response


@token_required
def list_requests(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """GET /api/v1/requests: my requests, newest first (the latest 100)."""
    mine = queries.list_my_requests(token.user)[:100]
    return JsonResponse({"requests": [_described(r) for r in mine]})


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
    found = queries.list_my_requests(token.user).filter(pk=_pk(request, "request_id")).first()
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


@api_method("POST")
@token_required
def cancel_request(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """POST /api/v1/requests/<id>/cancel: withdraw a pending request of mine."""
    try:
        cancelled = workflow.cancel_request(
            _pk(request, "request_id"), actor=token.user, now=now, ip=request_ip(request)
        )
    except refusals.RequestRefused as refusal:
        return refusal_json(refusal)
    return JsonResponse(_described(queries.list_my_requests(token.user).get(pk=cancelled.pk)))


# --- Approvals ------------------------------------------------------------------------------

_DECISION_KEYS = frozenset({"decision", "comment"})


def _decision_body(raw: bytes) -> tuple[str, str]:
    payload = load_json(raw)
    if not isinstance(payload, dict):
        raise InvalidRequestBody("The body must be a JSON object.")
    unknown = sorted(set(payload) - _DECISION_KEYS)
    if unknown:
        raise InvalidRequestBody(f"Unknown field {unknown[0]!r}; send decision and comment.")
    decision, comment = payload.get("decision"), payload.get("comment", "")
    if decision not in Approval.Decision.values:
        raise InvalidRequestBody('decision must be "approve" or "deny".')
    if not isinstance(comment, str) or len(comment) > 2000:
        raise InvalidRequestBody("comment must be text of at most 2000 characters.")
    return str(decision), comment


def _waiting(access_request: AccessRequest) -> dict[str, Any]:
    return {
        **_described(access_request),
        "requester": access_request.requester.label,
        "account_alias": access_request.account.alias,
        "business_unit": access_request.account.business_unit.name,
        "environment": access_request.account.environment,
        "justification": access_request.justification,
        "ticket": access_request.ticket,
        "approvals_required": access_request.account.approvals_required,
        "created_at": access_request.created_at.isoformat(),
    }


@api_method("GET")
@token_required
def list_approvals(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """GET /api/v1/approvals: pending requests I may decide and have not voted on, oldest first."""
    waiting = queries.list_decidable(token.user, now=now)
    return JsonResponse({"requests": [_waiting(r) for r in waiting]})


@api_method("POST")
@token_required
def decide(request: HttpRequest, token: ApiToken, now: datetime) -> HttpResponse:
    """POST /api/v1/approvals/<id>/decision: approve or deny, with an optional comment."""
    try:
        decision, comment = _decision_body(request.body)
    except Refused as refusal:
        return refuse_malformed(request, token, refusal, now=now)
    try:
        decided = workflow.decide_request(
            _pk(request, "request_id"),
            actor=token.user,
            decision=decision,
            comment=comment,
            now=now,
            ip=request_ip(request),
        )
    except refusals.RequestRefused as refusal:
        return refusal_json(refusal)
    return JsonResponse(
        {"id": decided.pk, "state": decided.state, "decision": decision, "comment": comment}
    )
