"""Blanking credentials out of every log line (SECURITY.md §3, issue 12 item 10).

Request lines reach the logs with their query strings (the runserver access log, Django's
request warnings): the federation endpoint is called with session keys and a bearer
SigninToken, the OIDC callback carries the authorization code and state, a SAML binding carries
a whole assertion, and a client may send its API token in the query string (refused, but the
line is still written). So every record that goes through our handlers is redacted, whatever
the parameter is called: by the value's shape (``fedat_`` tokens, JWTs, long base64 blobs) and
by the name of known-sensitive query parameters. Exceptions' text is redacted too.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import Any

REDACTED = "<redacted>"

# Query (or form) parameters whose value is a credential or a one-time proof, whatever it
# looks like. Preceded by a separator, so "error_code=" or "sts_code=" are left alone.
_SENSITIVE_PARAMS = (
    "code",
    "state",
    "SAMLResponse",
    "SAMLRequest",
    "RelayState",
    "Signature",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "code_verifier",
    "password",
    "Session",
    "SigninToken",
)
_PARAM_RE = re.compile(
    r"(?i)(?:(?<![\w%])|(?<=%26)|(?<=%3F))(" + "|".join(_SENSITIVE_PARAMS) + r")(=|%3D)"
    r"[^&\s\"'#;,]*",
)
# Values that are credentials by their shape, wherever they appear.
_SHAPES = (
    # Personal API tokens (federation/issuance/tokens.py).
    re.compile(r"fedat_[A-Za-z0-9_\-]+"),
    # JWTs (ID tokens, access tokens): base64url header starting '{"', two or more dots.
    re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-.]*"),
    # Bearer credentials in a quoted header.
    re.compile(r"(?i)(?<=Bearer )[^\s\"',]+"),
    # Long base64 (SAML messages, deflated or not, raw or percent-encoded): far longer than
    # any identifier or hash we log (a SHA-256 in hex is 64 characters).
    re.compile(r"(?:[A-Za-z0-9+/]|%2B|%2F|%3D|%2b|%2f|%3d){120,}(?:=|%3D|%3d){0,2}"),
)


def redact(text: str) -> str:
    text = _PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for shape in _SHAPES:
        text = shape.sub(REDACTED, text)
    return text


# Structured fields (JSON log lines) whose value is a credential whatever it looks like. Only
# credential names: "code" or "state" are ordinary fields here (a refusal code, a request state),
# and their values still go through ``redact``.
_SENSITIVE_FIELDS = frozenset(
    {
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "client_secret",
        "code_verifier",
        "password",
        "samlresponse",
        "samlrequest",
        "relaystate",
        "assertion",
        "authorization",
        "cookie",
        "session",
        "signintoken",
        "secretaccesskey",
        "sessiontoken",
        "accesskeyid",
        "secret_access_key",
        "session_token",
        "access_key_id",
        "credentials",
        "secret",
    }
)


def redact_fields(value: Any, key: str = "") -> Any:
    """``value`` (a structured log record: dicts, lists, scalars) with every string redacted,
    and the whole value of a credential-named field replaced. Anything else (an object logged
    as an extra) is written as its redacted ``str``, so nothing reaches a line unredacted."""
    if key.lower() in _SENSITIVE_FIELDS and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): redact_fields(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_fields(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return redact(str(value))


class RedactCredentials(logging.Filter):
    """Rewrites the record in place, message and exception text, before any formatter runs.

    Attached to the handlers (which see every logger's records, propagated or not) and to the
    loggers that log request lines (django.server, django.request).
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
