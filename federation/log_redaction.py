"""A logging filter that blanks credentials out of request lines (SECURITY.md §3).

The federation endpoint is called with the session's keys in the query string, and the login
URL carries a bearer SigninToken; when either reaches one of our servers (the demo stand-in)
the access log must not keep them.
"""

from __future__ import annotations

import logging
import re

_SECRET_PARAM_RE = re.compile(r"(?i)\b(Session|SigninToken)=[^&\s\"]*")


def redact(text: str) -> str:
    return _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}=<redacted>", text)


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
