"""Benchmark: request -> approve -> grant on PostgreSQL, 8 concurrent clients, and double grants.

Eight clients work in four pairs. In each round a pair files one request (through
``submit_request``), then both clients approve it at the same moment (a barrier releases them),
as two approvers clicking together would. Three runs, same load:

* locked: ``decide_request`` as shipped (``SELECT ... FOR UPDATE`` on the request, state
  re-checked under the lock);
* unlocked: the same steps without the row lock, put together here (``decide_unlocked``; the
  service has no such switch); the unique grant per request still stands, so the race shows up
  as transactions failing on that constraint (a 500 for the approver) instead of double grants;
* unlocked, no unique constraint: the constraint dropped too (in this benchmark's own database),
  showing the double grants the two layers prevent.

Prints, per run, the throughput of completed request->grant cycles, decision latency p50/p99,
the double-grant count, and how the losing click ended; then one ``target`` line per target:
no double grant and no failed click as shipped, and the lock's throughput against the unlocked
run (the baseline) at 0.9x or better. Runs in its own database
``<DATABASE_URL name>_bench_approvals``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/approvals.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from benchdb import scratch_database

SCRATCH = scratch_database("bench/approvals.py", "bench_approvals")
os.environ.pop("CELERY_BROKER_URL", None)  # notifications run eagerly, into a dummy mailer
os.environ["LOG_LEVEL"] = "ERROR"

CLIENTS = 8
PAIRS = CLIENTS // 2
# The lock may cost at most this much throughput against the unlocked run (same load, same run).
MIN_THROUGHPUT_VS_UNLOCKED = 0.9
FAILED_ON_CONSTRAINT = "failed on the unique grant constraint"

Decide = Callable[..., Any]


@dataclass
class Run:
    name: str
    cycles: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    double_grants: int = 0
    granted_events: int = 0


def populate(rounds: int) -> tuple[list[Any], list[Any]]:
    from federation.models import Access, Account, BusinessUnit, GroupMapping, LogicalRole, User

    bu = BusinessUnit.objects.create(slug="pb", name="Personal Banking", approver_groups=["mgr"])
    Account.objects.create(
        account_id="111111111111", alias="pb-dev", business_unit=bu, environment="dev"
    )
    role = LogicalRole.objects.create(name="admin", privileged=True)
    GroupMapping.objects.create(
        group="admins", role=role, business_unit=bu, access=Access.ELIGIBLE,
        max_grant=timedelta(hours=4),
    )  # fmt: skip
    approvers = [
        User.objects.create(username=f"approver{i}", email=f"a{i}@corp.example",
                            subject=f"a{i}", directory_groups=["mgr"])
        for i in range(CLIENTS)
    ]  # fmt: skip
    # One requester per (run, pair, round): a person has one pending request per role.
    requesters = User.objects.bulk_create(
        User(username=f"req{i}", email=f"r{i}@corp.example", subject=f"r{i}",
             directory_groups=["admins"])
        for i in range(3 * PAIRS * rounds)
    )  # fmt: skip
    return approvers, requesters


def drop_unique_grant_constraint() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "access_requests_grant")
        for name, info in constraints.items():
            if info["unique"] and info["columns"] == ["request_id"] and not info["primary_key"]:
                cursor.execute(f'ALTER TABLE access_requests_grant DROP CONSTRAINT "{name}"')


def decide_unlocked(request_id: int, *, actor: Any, decision: str, now: datetime) -> Any:
    """``decide_request``'s steps (re-check, audit a refusal, apply) without its row lock: the
    race the lock prevents. The benchmark's own code; the service has no unlocked mode."""
    from django.db import transaction

    from access_requests.models import AccessRequest
    from access_requests.services import decision as rules
    from access_requests.services import workflow
    from federation.audit.chain import record_refusal

    with transaction.atomic(durable=True):
        access_request = AccessRequest.objects.select_related(
            "requester", "account__business_unit", "role", "mapping"
        ).get(pk=request_id)
        entitlement = rules.requester_entitlement(access_request, now=now)
        refusal = rules.decision_refusal(
            access_request, actor=actor, decision=decision, entitlement=entitlement, now=now
        )
        if refusal is None:
            workflow._apply_decision(
                access_request, actor=actor, decision=decision, entitlement=entitlement,
                comment="", now=now, ip=None,
            )  # fmt: skip
        else:
            record_refusal(
                "access_request.decision_refused", refusal, actor=actor,
                account_id=access_request.account.account_id,
                target=f"request #{access_request.pk}", now=now,
                data={"request_id": request_id, "decision": decision,
                      "state": access_request.state},
            )  # fmt: skip
    if refusal is not None:
        raise refusal
    return access_request


def run(
    name: str, *, decide: Decide, approvers: list[Any], requesters: list[Any], rounds: int
) -> Run:
    from django.db import IntegrityError, connection
    from django.utils import timezone

    from access_requests import refusals
    from access_requests.models import AccessRequest, Approval, Grant
    from access_requests.services import workflow
    from federation.models import AuditEvent

    result = Run(name)
    guard = threading.Lock()
    start_barrier = threading.Barrier(CLIENTS)

    def client(pair: int, seat: int, barrier: threading.Barrier, shared: list[int]) -> None:
        approver = approvers[2 * pair + seat]
        try:
            start_barrier.wait()
            for round_ in range(rounds):
                if seat == 0:
                    requester = requesters.pop()
                    request = workflow.submit_request(
                        requester, account_id="111111111111", role="admin",
                        justification="bench", duration=timedelta(hours=1), now=timezone.now(),
                    )  # fmt: skip
                    shared[0] = request.pk
                barrier.wait()  # both clients now know the request
                barrier.wait()  # ... and click together
                began = time.perf_counter()
                try:
                    decide(
                        shared[0], actor=approver, decision=Approval.Decision.APPROVE,
                        now=timezone.now(),
                    )  # fmt: skip
                    outcome = "approved"
                except refusals.RequestRefused as refusal:
                    outcome = f"refused: {refusal.code}"
                except IntegrityError:
                    outcome = FAILED_ON_CONSTRAINT
                elapsed = time.perf_counter() - began
                with guard:
                    result.latencies.append(elapsed)
                    result.outcomes[outcome] += 1
                    if seat == 0:
                        result.cycles += 1
                barrier.wait()  # round done before the next request
                del round_
        finally:
            connection.close()

    threads = []
    for pair in range(PAIRS):
        barrier = threading.Barrier(2)
        shared = [0]
        for seat in (0, 1):
            threads.append(
                threading.Thread(target=client, args=(pair, seat, barrier, shared), daemon=True)
            )
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM access_requests_grant "
            "GROUP BY request_id HAVING COUNT(*) > 1) doubled"
        )
        result.double_grants = int(cursor.fetchone()[0])
    result.granted_events = AuditEvent.objects.filter(event_type="grant.granted").count()
    # Leave the next run a clean slate of grants (but keep the audit chain intact).
    Grant.objects.update(state=Grant.State.EXPIRED)
    AccessRequest.objects.filter(state=AccessRequest.State.PENDING).update(
        state=AccessRequest.State.CANCELLED
    )
    return result


def report(runs: list[Run]) -> None:
    print(f"\nrequest -> approve -> grant, {CLIENTS} concurrent clients ({PAIRS} pairs clicking")
    print("approve on the same request at the same moment), PostgreSQL\n")
    header = f"{'run':<34} {'cycles/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'double grants':>14}"
    print(header)
    print("-" * len(header))
    baseline_events = 0
    for r in runs:
        lat = sorted(r.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        print(f"{r.name:<34} {r.cycles / r.seconds:>9.1f} {p50:>8.1f} {p99:>8.1f} "
              f"{r.double_grants:>14}")  # fmt: skip
        events = r.granted_events - baseline_events
        baseline_events = r.granted_events
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(r.outcomes.items()))
        print(f"{'':<34} {r.cycles} cycles, {events} 'grant.granted' events; clicks: {outcomes}")
    print()
    shipped, unlocked = runs[0], runs[1]
    ratio = (shipped.cycles / shipped.seconds) / (unlocked.cycles / unlocked.seconds)
    failed = shipped.outcomes[FAILED_ON_CONSTRAINT]
    print(f"locked {shipped.cycles / shipped.seconds:.1f} cycles/s vs unlocked (baseline) "
          f"{unlocked.cycles / unlocked.seconds:.1f} cycles/s: {ratio:.2f}x")  # fmt: skip
    targets = [
        ("double grants as shipped", f"{shipped.double_grants}", "0", shipped.double_grants == 0),
        ("failed clicks as shipped", f"{failed}", "0", failed == 0),
        ("throughput locked vs unlocked", f"{ratio:.2f}x", f">= {MIN_THROUGHPUT_VS_UNLOCKED}x",
         ratio >= MIN_THROUGHPUT_VS_UNLOCKED),
    ]  # fmt: skip
    for name, measured, target, met in targets:
        print(f"target {name}: {measured} vs {target} {'met' if met else 'missed'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="requests per pair and run")
    args = parser.parse_args()

    SCRATCH.recreate()
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from access_requests.services import workflow

        settings.EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
        settings.SLACK_WEBHOOK_URL = ""

        call_command("migrate", verbosity=0)
        approvers, requesters = populate(args.rounds)
        runs = [
            run("locked (shipped)", decide=workflow.decide_request, approvers=approvers,
                requesters=requesters, rounds=args.rounds),
            run("unlocked, unique grant kept", decide=decide_unlocked, approvers=approvers,
                requesters=requesters, rounds=args.rounds),
        ]  # fmt: skip
        drop_unique_grant_constraint()
        runs.append(
            run("unlocked, no unique grant", decide=decide_unlocked, approvers=approvers,
                requesters=requesters, rounds=args.rounds)
        )  # fmt: skip
        report(runs)
        if runs[0].double_grants:
            sys.exit("FAIL: the shipped code made double grants")
    finally:
        SCRATCH.drop()


if __name__ == "__main__":
    main()
