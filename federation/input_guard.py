"""Text the service cannot store: refused at the edge with an audited 400 (issue 12).

PostgreSQL refuses NUL in text and JSON, and a lone UTF-16 surrogate cannot be encoded as UTF-8,
so either one reaching a query or the audit log used to be a 500. ``InputGuardMiddleware``
refuses them in the path, the query string and form fields before any view runs; services and
parsers that take text from elsewhere (JSON bodies, mapping files, commands) use
``unsafe_character`` / ``check_text`` on what they will store. The audit writer escapes what it
is given on its own (``federation.audit.chain``), so even a refusal of such input is recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from federation.audit.chain import record_refusal, request_ip
from federation.models import User
from federation.refusals import Refused, refusal_json, refusal_page

# NUL and the surrogate block: nothing else is refused here (control characters are a field's
# own rule, e.g. group names).
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
# A JSON body nested deeper than this is refused before it can exhaust the parser's stack.
MAX_JSON_DEPTH = 32


class UnsafeInput(Refused):
    """A request carried a character the service cannot store, or a malformed body."""

    code = "invalid_input"
    status = 400
    title = "Bad request"


def unsafe_character(value: str) -> str | None:
    """The first NUL or lone surrogate in ``value`` as ``U+XXXX`` (for a message); None if safe."""
    match = _UNSAFE.search(value)
    if match is None:
        return None
    return f"U+{ord(match.group()):04X}"


def check_text(value: str, field: str) -> str:
    """``value`` if it can be stored; UnsafeInput naming ``field`` otherwise."""
    found = unsafe_character(value)
    if found is not None:
        raise UnsafeInput(
            f"{field} contains a character that is not allowed ({found}).",
            detail={"field": field[:100]},
        )
    return value


def check_strings(value: Any, field: str) -> None:
    """Every string in a decoded JSON value, keys included (UnsafeInput on the first bad one)."""
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(str(key), f"{where} key")
                stack.append((child, f"{where}.{key}" if unsafe_character(key) is None else where))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))


def _depth_exceeds(body: str, limit: int) -> bool:
    # Counting brackets outside strings is enough to bound the parser's recursion.
    depth = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_json(body: bytes) -> Any:
    """A request body as JSON, refusing what json.loads would crash on or the database refuse:
    invalid UTF-8, nesting deeper than MAX_JSON_DEPTH, NUL and lone surrogates in any string."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeInput("The body must be UTF-8 JSON.") from exc
    if _depth_exceeds(text, MAX_JSON_DEPTH):
        raise UnsafeInput(f"The body is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        value = json.loads(text or "{}")
    except (ValueError, RecursionError) as exc:
        raise UnsafeInput("The body is not valid JSON.") from exc
    check_strings(value, "body")
    return value


def _first_unsafe(pairs: Iterable[tuple[str, list[str]]], where: str) -> str | None:
    for key, values in pairs:
        for text in (key, *values):
            if unsafe_character(text) is not None:
                return where if unsafe_character(key) is not None else f"{where} field {key!r}"
    return None


def find_unsafe_input(request: HttpRequest) -> str | None:
    """Where the request carries a NUL or lone surrogate (path, query, form), or None."""
    if unsafe_character(request.path) is not None:
        return "the path"
    found = _first_unsafe(request.GET.lists(), "the query")
    if found is None and request.method == "POST" and not request.path.startswith("/api/"):
        # Form bodies only: the API's JSON bodies are checked by load_json where they are read.
        found = _first_unsafe(request.POST.lists(), "the form") or _first_unsafe(
            (
                (key, [upload.name or "" for upload in uploads])
                for key, uploads in request.FILES.lists()
            ),
            "an uploaded file's name",
        )
    return found


class InputGuardMiddleware:
    """Refuses a request carrying text the service cannot store, before any view (and before
    the CSRF check, which would otherwise audit the path): an audited 400, JSON under /api/.

    Last in MIDDLEWARE: its refusal still passes out through the security headers, and views'
    process_view hooks (the CSRF check among them) run only after every middleware's call."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = find_unsafe_input(request)
        if where is None:
            return self.get_response(request)
        refusal = UnsafeInput(
            f"The request was refused: {where} contains a character that is not allowed "
            "(NUL or an unpaired surrogate)."
        )
        user = getattr(request, "user", None)
        record_refusal(
            "request.input_refused",
            refusal,
            actor=user if isinstance(user, User) else "anonymous",
            target=request.path,
            ip=request_ip(request),
            data={"method": request.method, "where": where},
            now=timezone.now(),
        )
        if request.path.startswith("/api/"):
            return refusal_json(refusal)
        if request.path.startswith("/scim/v2/"):
            # A SCIM client reads SCIM error bodies (RFC 7644 §3.12), never an HTML page.
            return HttpResponse(
                json.dumps(
                    {
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                        "status": "400",
                        "scimType": "invalidValue",
                        "detail": refusal.message,
                    }
                ),
                status=400,
                content_type="application/scim+json",
            )
        return refusal_page(request, refusal)
