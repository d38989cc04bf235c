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
| WEB_MAX_REQUESTS | a worker is replaced after this many requests (0: never) | 20000 |

SIGTERM stops gracefully (new connections refused, requests in flight finish within the
graceful timeout); SIGHUP replaces the workers the same way with fresh code and configuration.
"""

from __future__ import annotations

import os

from federation.observability.logging import gunicorn_logconfig

_cpus = os.cpu_count() or 1

bind = [os.environ.get("WEB_BIND", "0.0.0.0:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY", str(min(8, 2 * _cpus + 1))))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("WEB_TIMEOUT_SECONDS", "30"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT_SECONDS", "30"))
keepalive = int(os.environ.get("WEB_KEEPALIVE_SECONDS", "5"))
# Starting a worker costs about 2.5 s of CPU (Django and the app imported afresh; no preload, so
# SIGHUP brings fresh code): at 2,000 requests a worker that is 1.25 ms a request, more than a
# bare page costs (bench/load.py); at 20,000 it is 0.13 ms and a leak still has a bound.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "20000"))
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

# --- Logging. Errors and the access log go to standard error for the platform to collect, in
# LOG_FORMAT (json by default outside DEBUG: one object per line, every field redacted; the
# query string only redacted, never the Referer), through the service's own formatter
# (federation/observability/logging.py), with the response's X-Request-ID on access lines.
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = gunicorn_logconfig()

# Gunicorn's control socket lives at one path per user ($HOME/.gunicorn/gunicorn.ctl), which two
# instances on one host would share; signals (TERM, HUP, TTIN/TTOU) are the documented controls.
control_socket_disable = True
