"""What a log line says about the work in progress: the request id, the signed-in person's
label, the route (or the Celery task). Set by the request middleware and the Celery signal
receivers, read by the log formatter; contextvars, so each thread (and each task) has its own.

Standard library only: gunicorn's configuration imports the log formatter before Django starts.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

request_id: ContextVar[str | None] = ContextVar("fedaccess_request_id", default=None)
user_label: ContextVar[str | None] = ContextVar("fedaccess_user_label", default=None)
route: ContextVar[str | None] = ContextVar("fedaccess_route", default=None)
task: ContextVar[str | None] = ContextVar("fedaccess_task", default=None)


def fields() -> dict[str, str | None]:
    """The context of the current log record (None where unknown)."""
    return {
        "request_id": request_id.get(),
        "user": user_label.get(),
        "route": route.get(),
    }


def set_user(label: str) -> None:
    """Name the person the current request acts for (a session user or an API token's owner).
    Cleared with the rest of the request's context when the request ends."""
    user_label.set(label)


__all__ = ["Token", "fields", "request_id", "route", "set_user", "task", "user_label"]
