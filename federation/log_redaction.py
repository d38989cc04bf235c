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
