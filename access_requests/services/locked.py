"""The one sequence every racy change of a request or grant follows (STYLE: lock, re-check).

Lock the row (``SELECT ... FOR UPDATE``), re-check it under the lock, then either apply the
change or audit the refusal in the same durable transaction, and raise the refusal once that
audit has committed: a refused attempt leaves its trace even though the caller sees an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import QuerySet

from access_requests.models import AccessRequest, Grant
from access_requests.refusals import GrantNotFound, NotFound, RequestNotFound
from federation.audit.chain import record_refusal
from federation.models import User
from federation.refusals import Refused

Row = TypeVar("Row", AccessRequest, Grant)
Plan = TypeVar("Plan")


def change_locked(
    rows: QuerySet[Row],
    pk: int,
    *,
    check: Callable[[Row], Refused | Plan],
    apply: Callable[[Row, Plan], None],
    refused_event: str,
    actor: User,
    now: datetime,
    ip: str | None,
    refused_data: Mapping[str, Any] | None = None,
) -> Row:
    """Lock row ``pk`` of ``rows``; ``check`` it and ``apply`` what the check planned, or audit
    the ``Refused`` the check returned as ``refused_event`` (with the row's account and state)
    and raise it.

    ``check`` must not write; ``apply`` runs only when the check refused nothing. An unknown
    ``pk`` and a ``NotFound`` from the check (a row outside the actor's reach) are one answer:
    the same ``NotFound`` refusal, audited with the id asked for and nothing about the row.
    """
    kind = "grant" if rows.model is Grant else "request"
    with transaction.atomic(durable=True):
        row = rows.select_for_update(of=("self",)).filter(pk=pk).first()
        verdict = not_found(kind) if row is None else check(row)
        if row is not None and not isinstance(verdict, Refused):
            apply(row, verdict)
            return row
        assert isinstance(verdict, Refused)
        hidden = row is None or isinstance(verdict, NotFound)
        record_refusal(
            refused_event,
            verdict,
            actor=actor,
            account_id="" if hidden or row is None else row.account.account_id,
            target=f"{kind} #{pk}",
            ip=ip,
            now=now,
            data={
                **(refused_data or {}),
                **({} if hidden or row is None else {"state": row.state}),
            },
        )
    raise verdict


def not_found(kind: str) -> NotFound:
    """The one answer for an id that does not exist or that the actor may not see."""
    if kind == "grant":
        return GrantNotFound("No such grant.")
    return RequestNotFound("No such request.")
