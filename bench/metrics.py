"""Benchmark: what counting adds to the hot paths (issue 18 item 3), in both metric modes.

Prints, measured in the same run:

* baseline: ``issue_session`` p50 (entitlement re-check, STS AssumeRole on a moto server over
  loopback HTTP, row and audit event, one durable transaction), the hot path being counted;
* the counting one issuance adds (an STS call observed, the issuance counted on commit, the
  HTTP response counted and timed), and the counting one sign-in adds (the sign-in counted on
  commit, the HTTP response), each as the difference of medians between a transaction holding
  those calls and the same empty transaction, interleaved call by call;
* the same counting in prometheus-client's multiprocess mode (a child process of this script
  with ``PROMETHEUS_MULTIPROC_DIR`` set: values live in mmap'd files).

Sign-in is slower than issuance (bench/saml_acs.py), so its share of the issuance p50 is an
upper bound of its share of a sign-in. Runs in its own database ``<DATABASE_URL name>_bench_
metrics``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/metrics.py``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

CHILD = "--multiprocess-child" in sys.argv
if CHILD:
    # The parent made the scratch database and passes its URL in DATABASE_URL.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "federation.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
else:
    from benchdb import scratch_database

    SCRATCH = scratch_database("bench/metrics.py", "bench_metrics")
os.environ["LOG_LEVEL"] = "WARNING"

ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "300"))
COUNT_ITERATIONS = int(os.environ.get("BENCH_COUNT_ITERATIONS", "20000"))
TARGET_SHARE = 0.01  # counting may add at most 1% to an issuance


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def counting_costs() -> dict[str, float]:
    """Median microseconds the counting of one issuance and of one sign-in adds to a
    transaction, against the same empty transaction (interleaved)."""
    from django.db import connection, transaction

    from federation.observability import metrics

    connection.ensure_connection()

    def empty() -> None:
        with transaction.atomic():
            pass

    def issuance() -> None:
        with transaction.atomic():
            metrics.record_sts_call(
                operation="assume_role", region="eu-west-1", outcome="ok", seconds=0.004
            )
            metrics.record_issuance(
                account="111111111111", role="cloud-eng", region="eu-west-1", kind="cli"
            )
        metrics.record_http_response(
            route="api/v1/credentials", method="POST", status=200, seconds=0.01
        )

    def sign_in() -> None:
        with transaction.atomic():
            metrics.record_signin(idp="corp", protocol="saml")
        metrics.record_http_response(
            route="saml/<slug:slug>/acs/", method="POST", status=302, seconds=0.02
        )

    calls: dict[str, Callable[[], None]] = {
        "empty": empty,
        "issuance": issuance,
        "sign_in": sign_in,
    }
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(1000):
        for call in calls.values():
            call()
    for index in range(COUNT_ITERATIONS):
        order = list(calls.items())
        for name, call in order if index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1e6)
    base = statistics.median(samples["empty"])
    return {
        "empty_us": base,
        "issuance_us": statistics.median(samples["issuance"]) - base,
        "sign_in_us": statistics.median(samples["sign_in"]) - base,
    }


def child() -> None:
    import django

    django.setup()
    print(json.dumps(counting_costs()))


def issuance_p50(url: str) -> float:
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from federation.issuance.service import issue_session
    from federation.models import (
        Access,
        Account,
        BusinessUnit,
        GroupMapping,
        IdentityProvider,
        LogicalRole,
        MappingVersion,
        User,
    )

    call_command("migrate", verbosity=0)
    bu = BusinessUnit.objects.create(slug="pb", name="Personal Banking")
    Account.objects.create(
        account_id="111111111111", alias="pb-dev", business_unit=bu, environment="dev"
    )
    role = LogicalRole.objects.create(name="cloud-eng", max_session=timedelta(hours=1))
    GroupMapping.objects.create(
        group="aws-pb-cloud-eng", role=role, business_unit=bu, access=Access.STANDING
    )
    MappingVersion.objects.create(number=1, actor="bench", source="seed", document={})
    idp = IdentityProvider.objects.create(slug="corp", protocol="saml", entity_id="corp")
    user = User.objects.create(
        username="alice",
        email="alice@corp.example",
        idp=idp,
        subject="1",
        directory_groups=["aws-pb-cloud-eng"],
    )

    def issuance() -> None:
        issue_session(
            user,
            account_id="111111111111",
            role="cloud-eng",
            kind="cli",
            requested=None,
            now=timezone.now(),
            ip="127.0.0.1",
        )

    for _ in range(30):
        issuance()
    samples = []
    for _ in range(ITERATIONS):
        start = time.perf_counter()
        issuance()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main() -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "STS_BROKER_CHAINED": "false",
        }
    )
    SCRATCH.recreate()
    try:
        import django

        django.setup()
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        baseline = issuance_p50(url)
        plain = counting_costs()
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
            done = subprocess.run(  # noqa: S603 (this script, re-run as its child)
                [sys.executable, __file__, "--multiprocess-child"],
                env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory},
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
        multiprocess = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        SCRATCH.drop()
        moto.stop()

    print(f"metrics benchmark: counting {COUNT_ITERATIONS} times, issuance {ITERATIONS} times")
    print(f"  baseline: issue_session p50 (moto over loopback)   {baseline:9.1f} us")
    worst = 0.0
    for mode, costs in (("plain registry", plain), ("multiprocess files", multiprocess)):
        for path in ("issuance", "sign_in"):
            added = costs[f"{path}_us"]
            share = added / baseline
            worst = max(worst, share)
            print(
                f"  counting one {path:<9} ({mode:<18}) adds {added:6.1f} us "
                f"= {share * 100:5.2f}% of the issuance p50"
            )
    verdict = "met" if worst <= TARGET_SHARE else "missed"
    print(
        f"target metrics_overhead: {worst * 100:.2f}% vs {TARGET_SHARE * 100:.0f}% "
        f"of an issuance {verdict}"
    )


if __name__ == "__main__":
    if CHILD:
        child()
    else:
        main()
