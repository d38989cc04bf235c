"""Log line formats: one JSON object per line (production), or plain text (demo, DEBUG).

``LOG_FORMAT`` (settings.py) picks one for the app's handler. Both carry the request id of the
request being handled (context.py). The JSON line has ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``request_id``, ``user``, ``route``, then the record's extra fields,
``task`` inside a Celery task and ``exception`` with a traceback. Every string in it, field
names' values included, is redacted (``federation.log_redaction.redact_fields``): the
audit log is the record of truth, and log lines never carry a token, an assertion or a secret.

The gunicorn access log uses the same ``JsonFormatter`` (``gunicorn_logconfig``): its lines get
the request's method, path, status, duration and the ``X-Request-ID`` the response carried.

Standard library, python-json-logger and our own stdlib-only modules only: gunicorn's
configuration imports this before Django is set up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from federation.log_redaction import RedactCredentials, redact_fields
from federation.observability import context

LOG_FORMATS = ("json", "plain")

# gunicorn's access-log atoms (gunicorn.glogging.Logger.atoms) and the fields they become.
_ACCESS_ATOMS = {
    "h": "remote_addr",
    "m": "method",
    "U": "path",
    "q": "query",
    "H": "protocol",
    "s": "status",
    "B": "bytes",
    "f": "referer",
    "a": "user_agent",
}


def default_log_format(*, debug: bool, demo: bool) -> str:
    """``LOG_FORMAT`` when the environment does not say: plain for the demo and DEBUG."""
    return "plain" if debug or demo else "json"


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The structured fields of a gunicorn access line, from its atoms."""
    fields: dict[str, Any] = {}
    for atom, name in _ACCESS_ATOMS.items():
        value = atoms.get(atom)
        if value not in (None, "-", ""):
            fields[name] = value
    if "status" in fields:
        status = str(fields["status"])
        if status.isdigit():
            fields["status"] = int(status)
    micros = atoms.get("D")
    if isinstance(micros, int):
        fields["duration_seconds"] = micros / 1_000_000
    # gunicorn names response headers "{name}o", lower-cased.
    request_id = atoms.get("{x-request-id}o")
    if request_id not in (None, "-", ""):
        fields["request_id"] = request_id
    return fields


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line, redacted; for the app's handlers and gunicorn's access log."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"exc_info": "exception"})
        super().__init__(*args, **kwargs)

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        log_data["time"] = _time(record)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data.update(context.fields())
        task = context.task.get()
        if task is not None:
            log_data["task"] = task
        if isinstance(record.args, Mapping):
            log_data.update(_access_fields(record.args))
        # Django's request loggers attach the request (and runserver its socket) as extras:
        # the request id and route already say which request it was.
        message_dict.pop("request", None)
        super().add_fields(log_data, record, message_dict)
        log_data.pop("request", None)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        redacted: dict[str, Any] = redact_fields(log_data)
        return redacted


class PlainFormatter(logging.Formatter):
    """``time level logger [request id] message``: the demo's and DEBUG's lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = context.request_id.get() or "-"
        return super().format(record)


def formatter_for(log_format: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` formatter entry of ``log_format``."""
    if log_format == "json":
        return {"()": "federation.observability.logging.JsonFormatter"}
    return {"()": "federation.observability.logging.PlainFormatter"}


def gunicorn_logconfig(log_format: str | None = None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error and access logs in our format, redacted.

    ``log_format`` defaults to ``LOG_FORMAT`` from the environment, else plain under DEBUG and
    json otherwise (the same rule as settings.py). In JSON the formatter redacts every field
    itself; the plain handler carries the redacting filter.
    """
    if log_format is None:
        debug = os.environ.get("DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
        log_format = os.environ.get("LOG_FORMAT") or default_log_format(debug=debug, demo=False)
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    # The access line's atoms must reach the JSON formatter, so no filter rewrites its record
    # first; plain lines are whole strings and are redacted by the filter.
    filters = [] if log_format == "json" else ["redact_credentials"]
    handler = {
        "class": "logging.StreamHandler",
        "formatter": log_format,
        "filters": filters,
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {log_format: formatter_for(log_format)},
        "filters": {"redact_credentials": {"()": RedactCredentials}},
        "handlers": {"gunicorn_console": handler},
        # gunicorn merges this over its own defaults, whose root logger names a handler this
        # replaces: name the root here too (Django's LOGGING takes over in each worker).
        "root": {"handlers": ["gunicorn_console"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {
                "handlers": ["gunicorn_console"],
                "level": "INFO",
                "propagate": False,
            },
            "gunicorn.access": {
                "handlers": ["gunicorn_console"],
                "level": "INFO",
                "propagate": False,
            },
        },
    }


__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "PlainFormatter",
    "default_log_format",
    "formatter_for",
    "gunicorn_logconfig",
]
