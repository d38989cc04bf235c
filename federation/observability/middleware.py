"""The request's identity for logs and metrics: its request id, route and person.

``RequestContextMiddleware`` runs first, so every response (redirects, refusals, the 503 page)
carries ``X-Request-ID`` and every log line written while the request is handled carries the same
id. The id is taken from the header named by ``REQUEST_ID_HEADER`` only when that setting is set
(a trusted proxy that always writes the header) and the value is a plain token; otherwise it is
generated here, so a client can never choose the id its lines are filed under.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from federation.models import User
from federation.observability import context, metrics

RESPONSE_HEADER = "X-Request-ID"
# Proxies' ids (nginx $request_id, AWS ALB's X-Amzn-Trace-Id, UUIDs) fit this; nothing that
# could break a log line or a response header does.
_TRUSTED_ID_RE = re.compile(r"[A-Za-z0-9._:;=+/@-]{1,200}")


def request_id_for(request: HttpRequest) -> str:
    header = settings.REQUEST_ID_HEADER
    if header:
        given = request.headers.get(header, "")
        if _TRUSTED_ID_RE.fullmatch(given):
            return given
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        rid = request_id_for(request)
        # Set, not reset here: Django logs a 4xx/5xx (django.request) after the middleware
        # returns, and that line must carry the id too. request_finished clears them.
        context.request_id.set(rid)
        context.user_label.set(None)
        context.route.set(None)
        response = self.get_response(request)
        response[RESPONSE_HEADER] = rid
        if context.user_label.get() is None:
            # No view ran (an unknown path): Django's "Not Found" line still names the person.
            _name_known_user(request)
        match = getattr(request, "resolver_match", None)
        metrics.record_http_response(
            route=match.route if match is not None else None,
            method=request.method or "",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        # After URL resolution and authentication: the route and the session's person are known.
        match = request.resolver_match
        if match is not None:
            context.route.set(match.route)
        _name_known_user(request)


def _name_known_user(request: HttpRequest) -> None:
    """Put the session's person on the log lines if the request already loaded them: never a
    query of its own (on a dead database that would turn any response into an error)."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return
    if isinstance(user, User) and user.is_authenticated:
        context.set_user(user.label)


def clear_context(**_: Any) -> None:
    """The request is over (its response closed): its id leaves the thread's log lines."""
    context.request_id.set(None)
    context.user_label.set(None)
    context.route.set(None)


request_finished.connect(clear_context, dispatch_uid="fedaccess.observability.clear_context")
