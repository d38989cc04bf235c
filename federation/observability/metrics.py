"""The series of ``/metrics`` (docs/metrics.md), and the one call per counted event.

Each ``record_*`` function is the whole of what a counted code path adds: one call, after the
action. Two rules hold for all of them:

* Counting never breaks the counted action. A failure (an unwritable multiprocess directory, a
  bug here) is logged and swallowed; the action goes on.
* What happened inside a transaction is counted when it commits (``transaction.on_commit``), so
  a rolled-back sign-in or grant is not counted; outside a transaction it is counted at once.

Label values are bounded: every one is a closed vocabulary (states, decisions, reason codes,
STS problem kinds) or a row of our own tables (IdPs, accounts, roles, configured regions), never
a person, a request id or free text; anything else becomes ``other`` (``_label``).

With ``PROMETHEUS_MULTIPROC_DIR`` set in the environment before the process starts, prometheus-
client keeps every value in a file of that directory per process, and the scrape sums them
(views.py): gunicorn workers and Celery workers each count into it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import ParamSpec

from django.db import transaction
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

logger = logging.getLogger(__name__)

# No "_created" twin of every series: scrapers do not need it, and it doubles the exposition.
disable_created_metrics()  # type: ignore[no-untyped-call]

P = ParamSpec("P")

# Anything outside this shape (or longer) is not one of our identifiers: it is counted as "other".
_LABEL_RE = re.compile(r"[A-Za-z0-9_.:/@+\-]{1,100}")
OTHER = "other"

SIGNINS = Counter(
    "fedaccess_signins_total",
    "Completed sign-ins, by identity provider and protocol.",
    ["idp", "protocol"],
)
SIGNIN_REFUSALS = Counter(
    "fedaccess_signin_refusals_total",
    "Refused sign-ins, by identity provider (unknown when the URL names none) and reason code.",
    ["idp", "protocol", "reason"],
)
REFUSALS = Counter(
    "fedaccess_refusals_total",
    "Every audited refusal, by audit event type and reason code.",
    ["event", "reason"],
)
ISSUANCES = Counter(
    "fedaccess_issuances_total",
    "AWS role sessions issued, by account, role, STS region and kind (console or cli).",
    ["account", "role", "region", "kind"],
)
STS_DURATION = Histogram(
    "fedaccess_sts_request_duration_seconds",
    "Time of one STS call to one endpoint, by operation, region and outcome "
    "(ok, refused, or failover when the next endpoint was tried).",
    ["operation", "region", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STS_FAILOVERS = Counter(
    "fedaccess_sts_failovers_total",
    "STS endpoints passed over for the next one, by region and problem "
    "(connection, throttled, server_error, region, client).",
    ["region", "problem"],
)
ACCESS_REQUESTS = Counter(
    "fedaccess_access_requests_total",
    "Access requests entering each state (pending when filed; approved, denied, cancelled, "
    "expired).",
    ["state"],
)
DECISIONS = Counter(
    "fedaccess_access_request_decisions_total",
    "Approvers' votes on access requests, by decision (approve, deny).",
    ["decision"],
)
GRANTS = Counter(
    "fedaccess_grants_total",
    "Grants entering each state (active when granted; revoked, expired).",
    ["state"],
)
BREAK_GLASS = Counter(
    "fedaccess_break_glass_activations_total",
    "Break-glass activations (a grant with no approval), by business unit and environment.",
    ["business_unit", "environment"],
)
CELERY_FAILURES = Counter(
    "fedaccess_celery_task_failures_total",
    "Celery tasks that ended in failure, by task name.",
    ["task"],
)
CELERY_RETRIES = Counter(
    "fedaccess_celery_task_retries_total",
    "Celery task retries scheduled, by task name.",
    ["task"],
)
DRIFT_CHECKED = Gauge(
    "fedaccess_drift_check_timestamp_seconds",
    "When the last drift check ran (its start, Unix time), by outcome (ok: every account "
    "read; partial: some could not be read).",
    ["outcome"],
    multiprocess_mode="max",
)
HTTP_RESPONSES = Counter(
    "fedaccess_http_responses_total",
    "HTTP responses, by route pattern, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "fedaccess_http_request_duration_seconds",
    "Time from the first middleware to the response, by route pattern.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _label(value: object) -> str:
    text = str(value)
    return text if _LABEL_RE.fullmatch(text) else OTHER


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """A metrics failure is logged, never raised into the action being counted."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            logger.exception("metrics: could not record %s", record.__name__)

    return guarded


def _on_commit(count: Callable[[], None]) -> None:
    """Count when the caller's transaction commits, at once outside one (without touching the
    database: on_commit would open a connection to ask). ``count`` is guarded by the caller;
    robust=True is the second net, so a commit is never followed by an error."""
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(count, robust=True)
    else:
        count()


@_never_raises
def record_signin(*, idp: str, protocol: str) -> None:
    child = SIGNINS.labels(_label(idp), _label(protocol))
    _on_commit(_guarded_inc(child))


@_never_raises
def record_signin_refused(*, idp: str, protocol: str, reason: str, idp_known: bool) -> None:
    """``idp_known`` is False when the URL named no registered IdP: the slug is the client's
    text then, and is counted as ``unknown`` (a label per made-up slug would be unbounded)."""
    SIGNIN_REFUSALS.labels(
        _label(idp) if idp_known else "unknown", _label(protocol), _label(reason)
    ).inc()


@_never_raises
def record_refusal(*, event: str, reason: str) -> None:
    _on_commit(_guarded_inc(REFUSALS.labels(_label(event), _label(reason))))


@_never_raises
def record_issuance(*, account: str, role: str, region: str, kind: str) -> None:
    child = ISSUANCES.labels(_label(account), _label(role), _label(region), _label(kind))
    _on_commit(_guarded_inc(child))


@_never_raises
def record_sts_call(*, operation: str, region: str, outcome: str, seconds: float) -> None:
    STS_DURATION.labels(_label(operation), _label(region), _label(outcome)).observe(seconds)


@_never_raises
def record_sts_failover(*, region: str, problem: str) -> None:
    # The problem text is "kind: detail" (sts._failover_problem); only the kind is a label.
    kind = problem.split(":", 1)[0].split(" ", 1)[0].strip().lower()
    kind = {"server": "server_error"}.get(kind, kind)
    STS_FAILOVERS.labels(_label(region), _label(kind)).inc()


@_never_raises
def record_request_state(state: str) -> None:
    _on_commit(_guarded_inc(ACCESS_REQUESTS.labels(_label(state))))


@_never_raises
def record_decision(decision: str) -> None:
    _on_commit(_guarded_inc(DECISIONS.labels(_label(decision))))


@_never_raises
def record_grant_state(state: str) -> None:
    _on_commit(_guarded_inc(GRANTS.labels(_label(state))))


@_never_raises
def record_break_glass(*, business_unit: str, environment: str) -> None:
    _on_commit(_guarded_inc(BREAK_GLASS.labels(_label(business_unit), _label(environment))))


@_never_raises
def record_task_failure(task: str) -> None:
    CELERY_FAILURES.labels(_label(task)).inc()


@_never_raises
def record_task_retry(task: str) -> None:
    CELERY_RETRIES.labels(_label(task)).inc()


@_never_raises
def record_drift_check(*, finished_at: float, complete: bool) -> None:
    DRIFT_CHECKED.labels("ok" if complete else "partial").set(finished_at)


@_never_raises
def record_http_response(*, route: str | None, method: str, status: int, seconds: float) -> None:
    """``route`` is the URL pattern that matched (ours, so a bounded set), None when none did:
    the path itself is the client's text and never a label."""
    route_label = route[:200] if route else "unmatched"
    HTTP_RESPONSES.labels(route_label, method if method in _METHODS else OTHER, str(status)).inc()
    HTTP_DURATION.labels(route_label).observe(seconds)


def _guarded_inc(child: Counter) -> Callable[[], None]:
    @_never_raises
    def inc() -> None:
        child.inc()

    return inc
