"""Benchmark: the issuance path against a bare boto3 AssumeRole, same moto server, same run.

Prints p50/p99 (and the calling thread's CPU time) of

* baseline: ``assume_role`` on one reused boto3 client, with the same parameters the broker
  sends (RoleArn, RoleSessionName, SourceIdentity, DurationSeconds, three session tags),
* issuance: ``federation.issuance.service.issue_session`` (identity lock, entitlement re-check,
  duration rules, AssumeRole through federation/aws/sts.py, SessionIssuance row and its audit
  event, in one durable transaction on PostgreSQL),
* three of its parts alone, to show where the overhead goes: the STS adapter
  (``sts.assume_role``, failover loop and cached client), the entitlement re-check
  (``find_entitlement``, its memo warm) and one audit append in its own transaction,
* the floor of any audited action: one durable INSERT + COMMIT into a scratch table,

interleaved call by call so all see the same machine noise, and the overhead (difference of
the medians), once per audit sequencing mode: ``batched`` with a sequencer process placing the
events (production, where a broker runs) and ``inline`` (no broker). Ends with one line per
mode: ``target issuance_overhead_p50_<mode>: <ms> vs < 1.5 ms met|missed``. The moto server
runs in this process on a loopback port. Runs in its own database
``<DATABASE_URL name>_bench_issuance``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/issuance.py`` (``BENCH_ITERATIONS``,
``BENCH_AUDIT_SEQUENCING=batched`` for one mode).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import statistics
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event

from benchdb import scratch_database

# As in production: with DEBUG every query is also recorded in connection.queries, which costs
# CPU on each statement (`make bench` sets DEBUG=1 for the other benchmarks).
os.environ["DEBUG"] = "0"
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
SCRATCH = scratch_database("bench/issuance.py", "bench_issuance")
os.environ["LOG_LEVEL"] = "WARNING"

ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "500"))
WARMUP = 30
TARGET_MS = 1.5  # issue 19: the overhead over the bare AssumeRole
# With a broker (production) events are placed by the sequencer; without one, inline.
MODES = os.environ.get("BENCH_AUDIT_SEQUENCING", "batched,inline").split(",")
SEQUENCER_INTERVAL = 0.2  # seconds, as manage.py audit_sequencer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
        }
    )
    SCRATCH.recreate()
    try:
        import django

        django.setup()
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        run(url)
    finally:
        SCRATCH.drop()
        moto.stop()


def run(url: str) -> None:
    from datetime import timedelta

    import boto3
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from federation.audit.chain import record_event
    from federation.aws import sts
    from federation.entitlements.resolve import find_entitlement
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
    groups = ["aws-pb-cloud-eng", *(f"unmapped-{n}" for n in range(50))]
    user = User.objects.create(
        username="alice", email="alice@corp.example", idp=idp, subject="1", directory_groups=groups
    )

    client = boto3.session.Session().client("sts", region_name="us-east-1")
    params = {
        "RoleArn": "arn:aws:iam::111111111111:role/cloud-eng",
        "RoleSessionName": "alice@corp.example",
        "SourceIdentity": "alice@corp.example",
        "DurationSeconds": 3600,
        "Tags": [
            {"Key": "BusinessUnit", "Value": "pb"},
            {"Key": "IdP", "Value": "corp"},
            {"Key": "AccessRequest", "Value": "12345"},
        ],
    }

    def bare() -> None:
        client.assume_role(**params)

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

    def entitlement_check() -> None:
        find_entitlement(groups, "111111111111", "cloud-eng", now=timezone.now(), user_id=user.pk)

    def audit_append() -> None:
        with transaction.atomic(durable=True):
            record_event(
                "bench.audit",
                actor=user,
                account_id="111111111111",
                target="111111111111/cloud-eng",
                data={"kind": "cli", "role": "cloud-eng", "why": ["aws-pb-cloud-eng"]},
                now=timezone.now(),
            )

    request = sts.AssumeRoleRequest(
        role_arn=params["RoleArn"],
        session_name="alice@corp.example",
        source_identity="alice@corp.example",
        duration_seconds=3600,
        tags=(("BusinessUnit", "pb"), ("IdP", "corp"), ("AccessRequest", "12345")),
    )

    def adapter() -> None:
        sts.assume_role(request)

    def floor_commit() -> None:
        # One durable INSERT + COMMIT of a row like the audit event's: the least an audited
        # action can cost (a scratch table, so the chain is not touched).
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_floor (at, data) VALUES (%s, %s::jsonb)",
                [timezone.now(), '{"kind": "cli", "role": "cloud-eng"}'],
            )

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, at timestamptz, data jsonb)"
        )

    calls = {
        "baseline": bare,
        "issuance": issuance,
        "adapter": adapter,
        "entitlement": entitlement_check,
        "audit": audit_append,
        "floor": floor_commit,
    }
    labels = (
        ("baseline", "bare boto3 assume_role, reused client"),
        ("issuance", "issue_session (check + STS + row + audit)"),
        ("adapter", "  of which: sts.assume_role alone"),
        ("entitlement", "  of which: entitlement re-check alone"),
        ("audit", "  of which: audit append + commit alone"),
        ("floor", "floor: one durable INSERT + COMMIT"),
    )
    print(f"issuance benchmark: {ITERATIONS} calls each, interleaved, moto at {url}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    overheads: dict[str, float] = {}
    for mode in MODES:
        settings.AUDIT_SEQUENCING = mode
        sequencer = start_sequencer() if mode == "batched" else None
        try:
            samples, cpu = measure(calls)
        finally:
            if sequencer is not None:
                sequencer()
        print(
            f"AUDIT_SEQUENCING={mode}"
            + (
                " (a sequencer process places events, as with a broker)"
                if mode == "batched"
                else " (each writer places its own event: no broker)"
            )
        )
        for name, label in labels:
            values = samples[name]
            print(
                f"  {label:<44} p50 {statistics.median(values):6.2f} ms   "
                f"p99 {percentile(values, 0.99):6.2f} ms   "
                f"CPU p50 {statistics.median(cpu[name]):5.2f} ms"
            )
        overhead = statistics.median(samples["issuance"]) - statistics.median(samples["baseline"])
        overheads[mode] = overhead
        cpu_overhead = statistics.median(cpu["issuance"]) - statistics.median(cpu["baseline"])
        print(
            f"  overhead at p50: {overhead:.2f} ms, of which this thread's CPU "
            f"{cpu_overhead:.2f} ms (the rest: waiting on PostgreSQL, its commit, the scheduler)"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for mode, overhead in overheads.items():
        verdict = "met" if overhead < TARGET_MS else "missed"
        print(
            f"target issuance_overhead_p50_{mode}: {overhead:.2f} ms vs < {TARGET_MS} ms {verdict}"
        )


def measure(
    calls: dict[str, Callable[[], None]],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and this thread's CPU time of each call, in ms (the CPU time leaves out the
    moto server's threads and the waits on PostgreSQL and the network)."""
    for _ in range(WARMUP):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for index in range(ITERATIONS):
        order = list(calls.items())
        for name, call in order if index % 2 == 0 else reversed(order):
            start, start_cpu = time.perf_counter(), time.thread_time()
            call()
            cpu[name].append((time.thread_time() - start_cpu) * 1000)
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples, cpu


def _sequencer_loop(stop: Event) -> None:
    """``manage.py audit_sequencer``'s loop, at its default interval."""
    from federation.audit.sequencer import sequence_pending

    while not stop.is_set():
        if sequence_pending() == 0:
            time.sleep(SEQUENCER_INTERVAL)


def start_sequencer() -> Callable[[], None]:
    """A sequencer process; the returned function stops it once every event is placed."""
    from django.db import connections

    from federation.models import AuditEvent

    connections.close_all()
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    process = ctx.Process(target=_sequencer_loop, args=(stop,))
    process.start()

    def finish() -> None:
        while AuditEvent.objects.filter(seq__isnull=True).exists():
            time.sleep(0.05)
        stop.set()
        process.join()

    return finish


if __name__ == "__main__":
    main()
