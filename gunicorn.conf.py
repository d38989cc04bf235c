"""Gunicorn settings for the web process (docs/production.md, "Running in production").

Started by ``scripts/serve web``, the one production start that the Dockerfile, compose.yaml and
the smoke test (tests/production/) all run. Every value comes from the environment:

| variable | meaning | default |
|---|---|---|
| WEB_BIND | address:port to listen on | 0.0.0.0:8000 |
| WEB_CONCURRENCY | worker processes | 2 x CPUs + 1, at most 8 |
| WEB_THREADS | threads per worker (gthread) | 4 |
| WEB_TIMEOUT_SECONDS | a worker silent this long is killed and replaced | 30 |
| WEB_GRACEFUL_TIMEOUT_SECONDS | on SIGTERM / SIGHUP, requests in flight get this long | 30 |
| WEB_KEEPALIVE_SECONDS | how long an idle keep-alive connection is kept | 5 |
| WEB_MAX_REQUESTS | a worker is replaced after this many requests (0: never) | 2000 |

SIGTERM stops gracefully (new connections refused, requests in flight finish within the
graceful timeout); SIGHUP replaces the workers the same way with fresh code and configuration.
"""

from __future__ import annotations

import os

_cpus = os.cpu_count() or 1

bind = [os.environ.get("WEB_BIND", "0.0.0.0:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY", str(min(8, 2 * _cpus + 1))))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("WEB_TIMEOUT_SECONDS", "30"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT_SECONDS", "30"))
keepalive = int(os.environ.get("WEB_KEEPALIVE_SECONDS", "5"))
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "2000"))
max_requests_jitter = max_requests // 10
wsgi_app = "federation.wsgi:application"

# Forwarded headers are decided by the application alone (TRUSTED_PROXY_COUNT, default: never
# believed; federation/edge/proxy.py). Gunicorn would otherwise trust X-Forwarded-Proto from
# 127.0.0.1 by default, so anything on the same host could claim https.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}

# Request size bounds before Django sees anything (SAML responses are the largest input).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# --- Logging. Errors and the access log go to standard error / output for the platform to
# collect. ACCESS LOG FORMAT (one JSON object per line): the path only (%(U)s), never the
# query string, which carries OIDC codes and states; never the Referer, which can too.
# The structured-logging work (federation/observability/) may replace this format with its
# formatter; keep the field names.
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
access_log_format = (
    '{"time": "%(t)s", "logger": "gunicorn.access", "remote_addr": "%(h)s", '
    '"forwarded_for": "%({x-forwarded-for}i)s", "method": "%(m)s", "path": "%(U)s", '
    '"status": %(s)s, "bytes": "%(B)s", "duration_ms": %(M)s, "user_agent": "%(a)s"}'
)

# Gunicorn's control socket lives at one path per user ($HOME/.gunicorn/gunicorn.ctl), which two
# instances on one host would share; signals (TERM, HUP, TTIN/TTOU) are the documented controls.
control_socket_disable = True
