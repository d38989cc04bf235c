"""The one refusal shape (LAYOUT.md) and its two translators, to an HTML page and to JSON.

Every "no" the service says is a ``Refused``: a business refusal (requests, issuance, tokens,
drafts, registration), a protocol refusal (SAML, OIDC: ``SignInRefused(msg, code="saml.…")``)
or a peer failure (STS down: 502/503). ``code`` is stable: it is the audit log's
``data["reason"]`` and the API's ``{"error": code}``; the message is the sentence shown to the
person and must never carry an assertion, a token or a secret. Codes already documented and in
audit logs keep their values.

Recording a refusal in the audit log is ``federation.audit.chain.record_refusal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


class Refused(Exception):
    """A refused action. Subclasses set ``code``, ``status`` and ``title`` as class attributes;
    a table-driven family (sign-in) passes ``code`` and ``status`` per instance."""

    code: str = "refused"
    status: int = 400
    # The heading of the HTML page that shows this refusal.
    title: str = "Refused"
    # Keys of ``detail`` the JSON answer carries beside error and message (e.g. a URL the
    # client must open); everything else in ``detail`` is for the audit log only.
    public_detail: tuple[str, ...] = ()

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.detail: dict[str, Any] = dict(detail or {})

    @property
    def message(self) -> str:
        """The sentence shown to the person."""
        return str(self.args[0]) if self.args else ""


def refusal_page(
    request: HttpRequest,
    refusal: Refused,
    *,
    back_url: str = "/",
    back_label: str = "Back to my access",
    context: Mapping[str, Any] | None = None,
    recorded: bool = True,
) -> HttpResponse:
    """The HTML translator: a page that says what went wrong, with the refusal's status.

    ``recorded`` says whether the caller audited the refusal; the page tells the person so
    only when it is true."""
    return render(
        request,
        "federation/refused.html",
        {
            "title": refusal.title,
            "message": refusal.message,
            "code": refusal.code,
            "back_url": back_url,
            "back_label": back_label,
            "recorded": recorded,
            **(context or {}),
        },
        status=refusal.status,
    )


def refusal_json(refusal: Refused) -> JsonResponse:
    """The JSON translator: ``{"error": code, "message": message}`` (plus the refusal's
    ``public_detail`` keys), never cached."""
    body: dict[str, Any] = {"error": refusal.code, "message": refusal.message}
    body.update({k: refusal.detail[k] for k in refusal.public_detail if k in refusal.detail})
    response = JsonResponse(body, status=refusal.status)
    response["Cache-Control"] = "no-store"
    if refusal.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="fedaccess"'
    return response
