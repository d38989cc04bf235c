"""Gauges read from the database when ``/metrics`` is scraped (docs/metrics.md).

State that lives in rows (grants active, revocations owed, pending requests, drift, the audit
sequencing backlog) is counted from the rows at scrape time, so every instance and process
reports the same truth and nothing has to be kept in step. Each query runs on an index (the
partial indexes on active grants, owed revocations and pending audit events), counts at most
``COUNT_CAP`` rows, and all of them together run under a statement timeout: a scrape stays cheap
however large a backlog grows. A query that fails is logged and its gauges left out; the rest
of the scrape (every counter) still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from prometheus_client.core import GaugeMetricFamily, Metric

from access_requests.models import AccessRequest, Grant
from federation.models import AuditEvent
from federation.provisioning.drift import drifted_roles

logger = logging.getLogger(__name__)

# A gauge at the cap means "at least this many": counting further would make the scrape as slow
# as the backlog is large.
COUNT_CAP = 1_000_000
STATEMENT_TIMEOUT_MS = 2000


def _bounded_count(rows: QuerySet[AccessRequest] | QuerySet[Grant] | QuerySet[AuditEvent]) -> int:
    return int(rows.order_by()[:COUNT_CAP].count())


def _age(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _grants(now: datetime) -> Iterator[Metric]:
    active = Grant.objects.filter(state=Grant.State.ACTIVE, ends_at__gt=now)
    yield _gauge("fedaccess_grants_active", "Grants active now.", _bounded_count(active))


def _revocations(now: datetime) -> Iterator[Metric]:
    owed = Grant.objects.filter(state=Grant.State.REVOKED, revocation_applied_at__isnull=True)
    yield _gauge(
        "fedaccess_revocations_owed",
        "Revoked grants whose IAM deny policy is not yet in place (the retry sweep owes it).",
        _bounded_count(owed),
    )
    oldest = owed.order_by("revoked_at").values_list("revoked_at", flat=True).first()
    yield _gauge(
        "fedaccess_revocation_owed_oldest_age_seconds",
        "Age of the oldest owed revocation policy (0 when none is owed).",
        _age(now, oldest),
    )


def _requests(now: datetime) -> Iterator[Metric]:
    pending = AccessRequest.objects.filter(state=AccessRequest.State.PENDING)
    yield _gauge(
        "fedaccess_access_requests_pending",
        "Access requests waiting for a decision.",
        _bounded_count(pending),
    )


def _drift(now: datetime) -> Iterator[Metric]:
    yield _gauge(
        "fedaccess_drift_roles",
        "Roles that differ from the tables, as the control loop's latest drift check found.",
        drifted_roles(),
    )


def _audit(now: datetime) -> Iterator[Metric]:
    pending = AuditEvent.objects.filter(seq__isnull=True)
    yield _gauge(
        "fedaccess_audit_unsequenced_events",
        "Audit events written but not yet given their place in the hash chain.",
        _bounded_count(pending),
    )
    # The partial index audit_pending is on id: the lowest pending id is the oldest written.
    oldest = pending.order_by("id").values_list("recorded_at", flat=True).first()
    yield _gauge(
        "fedaccess_audit_sequencing_lag_seconds",
        "How long the oldest unsequenced audit event has waited (0 when none waits).",
        _age(now, oldest),
    )


SECTIONS: tuple[Callable[[datetime], Iterator[Metric]], ...] = (
    _grants,
    _revocations,
    _requests,
    _drift,
    _audit,
)


class DatabaseGauges:
    """A prometheus-client collector: the gauges above, read at ``now``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        up = 1.0
        for section in SECTIONS:
            try:
                metrics = _read(section, self.now)
            except DatabaseError as error:
                # The rest would wait for the same dead or slow database: stop at the first.
                logger.warning(
                    "metrics: database gauges left out (%s at %s)",
                    type(error).__name__,
                    section.__name__,
                )
                up = 0.0
                break
            yield from metrics
        yield _gauge(
            "fedaccess_metrics_database_up",
            "1 when every database gauge of this scrape could be read, else 0.",
            up,
        )


def _read(section: Callable[[datetime], Iterator[Metric]], now: datetime) -> list[Metric]:
    # Its own transaction, so a failed query leaves the connection usable for the next section
    # and the timeout (SET LOCAL) ends with it.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)", [str(STATEMENT_TIMEOUT_MS)]
                )
        return list(section(now))
