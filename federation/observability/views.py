"""``/metrics`` (SPEC §3.4): Prometheus text, for a scraper only (SPEC §3.1 ``METRICS_TOKEN``).

Access: with ``METRICS_TOKEN`` set, ``Authorization: Bearer <token>`` is required from everyone,
compared in constant time; without it, only loopback clients (REMOTE_ADDR, which the
deployment's proxy sets; never a forwarded header, which the client writes). A refusal says no
more than its status: 401 (token missing or wrong) or 403 (not loopback).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from federation.observability.collectors import DatabaseGauges

logger = logging.getLogger(__name__)

# The classic text format that generate_latest writes, which every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Scrape:
    """What one scrape exposes: this process's registry, or in multiprocess mode the sum of
    every process's files, then the database gauges."""

    def __init__(self, database: DatabaseGauges) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        directory = settings.PROMETHEUS_MULTIPROC_DIR
        if directory:
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            yield from registry.collect()
        else:
            yield from REGISTRY.collect()
        yield from self.database.collect()


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _refusal(status: int) -> HttpResponse:
    response = HttpResponse(
        "Unauthorized\n" if status == 401 else "Forbidden\n",
        status=status,
        content_type="text/plain; charset=utf-8",
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    response["Cache-Control"] = "no-store"
    return response


def access_status(request: HttpRequest) -> int | None:
    """None when ``request`` may read the metrics, else the refusal's status."""
    expected = settings.METRICS_TOKEN
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            return 401
        return None
    return None if _loopback(str(request.META.get("REMOTE_ADDR") or "")) else 403


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refused = access_status(request)
    if refused is not None:
        # Who asked, not what they sent: an Authorization header is a credential.
        logger.warning("metrics: refused (%s) for %s", refused, request.META.get("REMOTE_ADDR"))
        return _refusal(refused)
    body = generate_latest(_Scrape(DatabaseGauges(timezone.now())))
    response = HttpResponse(body, content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
