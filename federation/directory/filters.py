"""SCIM list filters (RFC 7644 §3.4.2.2), parsed by scim2-models.

What Okta and Entra ID send on every sync is answered by an indexed query: ``userName eq``,
``externalId eq``, ``id eq`` on Users; ``displayName eq``, ``externalId eq``, ``id eq`` and
``members[value eq "..."]`` (Entra's membership probe) on Groups, alone or joined by ``and``.
Any other valid filter is evaluated by the library's own matcher over the IdP's resources
(small directories only: refused with ``tooMany`` past ``SCAN_LIMIT``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from scim2_models import SCIMException, ScimFilter
from scim2_models.path.expressions import AttrPath, Comparison, LogicalExpr, ValuePath

from federation.directory.errors import ScimError

SCAN_LIMIT = 20_000


@dataclass(frozen=True)
class ParsedFilter:
    """Either an indexed query (``query``) or a filter to match one by one (``scan``)."""

    query: Q | None
    scan: Any = None


def parse_filter(text: str, *, kind: str, model: Any) -> ParsedFilter:
    """``text`` for the ``kind`` ("User" or "Group") endpoint. Raises ScimError 400
    ``invalidFilter`` for a filter that does not parse or names an unknown attribute."""
    if len(text) > 2000:
        raise ScimError("The filter is too long.", scim_type="invalidFilter")
    try:
        bound = ScimFilter[model](text)
    except (SCIMException, ValueError, TypeError) as exc:
        detail = exc.detail if isinstance(exc, SCIMException) else str(exc)
        raise ScimError(f"Invalid filter: {detail}", scim_type="invalidFilter") from None
    query = _indexed(bound.ast, kind)
    return ParsedFilter(query=query, scan=None if query is not None else bound)


_USER_COLUMNS = {"username": "user_name__iexact", "externalid": "external_id", "id": "scim_id"}
_GROUP_COLUMNS = {
    "displayname": "display_name__iexact",
    "externalid": "external_id",
    "id": "scim_id",
}


def _indexed(node: Any, kind: str) -> Q | None:
    if isinstance(node, LogicalExpr) and node.op.value == "and":
        parts = [_indexed(term, kind) for term in node.terms]
        if any(part is None for part in parts):
            return None
        query = Q()
        for part in parts:
            query &= part  # type: ignore[operator]
        return query
    if isinstance(node, Comparison) and node.op.value == "eq" and isinstance(node.value, str):
        path: AttrPath = node.attr_path
        if (
            path.uri
            and not path.uri.lower().endswith(":user")
            and not path.uri.lower().endswith(":group")
        ):
            return None
        name = path.attr.lower()
        if kind == "Group" and name == "members" and (path.sub_attr or "").lower() == "value":
            return _member_query(node.value)
        if path.sub_attr:
            return None
        column = (_USER_COLUMNS if kind == "User" else _GROUP_COLUMNS).get(name)
        if column is None:
            return None
        if column == "scim_id":
            return Q(scim_id=_as_uuid(node.value))
        return Q(**{column: node.value})
    if (
        isinstance(node, ValuePath)
        and kind == "Group"
        and node.attr_path.attr.lower() == "members"
        and node.sub_attr is None
        and isinstance(node.val_filter, Comparison)
        and node.val_filter.op.value == "eq"
        and node.val_filter.attr_path.attr.lower() == "value"
        and isinstance(node.val_filter.value, str)
    ):
        return _member_query(node.val_filter.value)
    return None


def _member_query(value: str) -> Q:
    return Q(directorymembership__member__scim_id=_as_uuid(value))


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # matches nothing: no resource has such an id
