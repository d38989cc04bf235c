"""The SCIM error (RFC 7644 §3.12): a ``Refused`` with the HTTP status and the ``scimType``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.refusals import Refused


class ScimError(Refused):
    """Answered as a SCIM error body; audited as ``scim.refused`` with ``code`` as the reason.

    ``scim_type`` is RFC 7644 Table 9's keyword (``invalidValue``, ``uniqueness``,
    ``invalidFilter``, ``invalidSyntax``, ``invalidPath``, ``noTarget``, ``mutability``,
    ``tooMany``, ``invalidVers``) or empty for errors that have none (401, 404, 412, 500s).
    """

    code = "scim.error"
    status = 400
    title = "SCIM request refused"

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        scim_type: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=f"scim.{scim_type or status}", status=status, detail=detail)
        self.scim_type = scim_type


def not_found(kind: str, scim_id: str) -> ScimError:
    return ScimError(f"No {kind} {scim_id[:64]!r} here.", status=404)


def invalid(message: str) -> ScimError:
    return ScimError(message, scim_type="invalidValue")
