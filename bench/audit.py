"""Benchmark: audit appends/s with 1, 8 and 16 writers; sequencing lag; verify speed.

Writers are processes (one PostgreSQL connection each), each append its own transaction, for
``--seconds`` per run. Three designs, same run, same database:

* floor: a plain ``INSERT`` of the event row and ``COMMIT`` (no chain at all);
* one lock per append: the design before batching (lock the chain-head row, insert the event
  numbered and hashed, move the head, commit), put together here as it was shipped;
* batched: ``record_event`` as shipped with ``AUDIT_SEQUENCING=batched`` (insert unsequenced,
  commit) while one ``sequence_pending`` loop runs in its own process, as
  ``manage.py audit_sequencer`` does (every 0.2 s, at once again after a full batch). The lag
  is each event's ``sequenced_at - recorded_at``.

Each cell runs ``--repeat`` rounds, interleaved with the other designs, and keeps its best.
Then ``--verify-events`` pending events are inserted in one statement, sequenced (events/s) and
verified by ``verify_chain`` (events/s). Ends with ``target`` lines (issue 16).
Runs in its own database ``<DATABASE_URL name>_bench_audit``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/audit.py [--seconds S] [--verify-events N]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier, Event

from benchdb import scratch_database

SCRATCH = scratch_database("bench/audit.py", "bench_audit")
os.environ.pop("CELERY_BROKER_URL", None)
os.environ["AUDIT_SEQUENCING"] = "batched"
os.environ["LOG_LEVEL"] = "ERROR"

WRITERS = (1, 8, 16)
TARGET_VS_FLOOR = 0.70
TARGET_VS_ONE_LOCK = 5.0
TARGET_LAG_P99 = 2.0
TARGET_VERIFY = 100_000
SEQUENCER_INTERVAL = 0.2  # seconds, as manage.py audit_sequencer
DATA = {"groups": ["eng", "ops"], "role": "ReadOnly", "account": "111111111111"}

Append = Callable[[int], None]


def plain_insert(i: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO federation_auditevent (at, event_type, actor, account_id, target, data)"
            " VALUES (%s, 'bench', 'writer@corp.example', '111111111111', 'role', %s)",
            [datetime.now(UTC), _json({**DATA, "i": i})],
        )


def one_lock_append(i: int) -> None:
    """The shipped design before issue 16: every append waits for the one head row."""
    from django.db import transaction

    from federation.audit.hashing import canonical_record, chain_hash
    from federation.models import AuditChainHead, AuditEvent

    at = datetime.now(UTC)
    data = {**DATA, "i": i}
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        seq = head.seq + 1
        record = canonical_record(
            seq=seq, at=at, event_type="bench", actor="writer@corp.example",
            account_id="111111111111", target="role", ip=None, data=data,
        )  # fmt: skip
        digest = chain_hash(head.hash, record)
        AuditEvent(
            seq=seq, at=at, event_type="bench", actor="writer@corp.example",
            account_id="111111111111", target="role", data=data, prev_hash=head.hash,
            hash=digest, sequenced_at=at,
        ).save(force_insert=True)  # fmt: skip
        AuditChainHead.objects.filter(pk=1).update(seq=seq, hash=digest)


def batched_append(i: int) -> None:
    from federation.audit.chain import record_event

    record_event(
        "bench", actor="writer@corp.example", account_id="111111111111", target="role",
        data={**DATA, "i": i}, now=datetime.now(UTC),
    )  # fmt: skip


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def _writer(append: Append, barrier: Barrier, stop: Event, out: mp.Queue[int]) -> None:
    from django.db import connection

    connection.ensure_connection()
    barrier.wait()
    n = 0
    while not stop.is_set():
        append(n)
        n += 1
    out.put(n)


def _sequencer(stop: Event) -> None:
    """``manage.py audit_sequencer``'s loop, at its default interval."""
    from federation.audit.sequencer import sequence_pending

    while not stop.is_set():
        if sequence_pending() == 0:
            time.sleep(SEQUENCER_INTERVAL)


def run(append: Append, writers: int, seconds: float, *, sequencer: bool) -> float:
    """Appends/s of ``writers`` processes over ``seconds``."""
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("fork")
    barrier, stop, out = ctx.Barrier(writers + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(append, barrier, stop, out)) for _ in range(writers)]
    seq_stop = ctx.Event()
    seq_proc = ctx.Process(target=_sequencer, args=(seq_stop,)) if sequencer else None
    for p in procs:
        p.start()
    if seq_proc:
        seq_proc.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    total = sum(out.get() for _ in procs)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    if seq_proc:
        _drain()
        seq_stop.set()
        seq_proc.join()
    return total / elapsed


def _drain() -> None:
    from federation.models import AuditEvent

    while AuditEvent.objects.filter(seq__isnull=True).exists():
        time.sleep(0.05)


def lag_p99() -> tuple[float, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM sequenced_at - recorded_at) FROM federation_auditevent"
            " WHERE event_type = 'bench'"
        )
        lags = sorted(float(row[0]) for row in cursor.fetchall())
    return statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]


def reset() -> None:
    from django.db import connection

    from federation.audit.chain import forget_verification
    from federation.audit.hashing import GENESIS_HASH

    with connection.cursor() as cursor:
        # TRUNCATE is not a row operation: the append-only trigger does not see it (bench only).
        cursor.execute("TRUNCATE federation_auditevent RESTART IDENTITY")
        cursor.execute("UPDATE federation_auditchainhead SET seq = 0, hash = %s", [GENESIS_HASH])
    forget_verification()


def verify_speed(events: int, jobs: int) -> tuple[float, float, float]:
    """(sequencing, verify with 1 process, verify with ``jobs``) in events/s over ``events``."""
    from django.db import connection

    from federation.audit.chain import verify_chain
    from federation.audit.sequencer import sequence_pending

    reset()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO federation_auditevent (at, event_type, actor, account_id, target, data)"
            " SELECT now() + g * interval '1 microsecond', 'bench.verify', 'writer@corp.example',"
            " '111111111111', 'role', jsonb_build_object('i', g, 'groups', '[\"eng\",\"ops\"]')"
            " FROM generate_series(1, %s) AS g",
            [events],
        )
    started = time.perf_counter()
    placed = sequence_pending()
    sequencing = placed / (time.perf_counter() - started)
    rates = []
    for n in (1, jobs):
        started = time.perf_counter()
        status = verify_chain(jobs=n)
        rates.append(events / (time.perf_counter() - started))
        if not status.ok or status.verified_up_to != events:
            raise SystemExit(f"FAIL: verify after sequencing: {status}")
    return sequencing, rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per design and writer count")
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4))
    parser.add_argument("--skip-appends", action="store_true", help="verify figures only")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of every cell; each cell's best is kept"
    )
    args = parser.parse_args()

    SCRATCH.recreate()
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from federation.audit.chain import verify_chain

        call_command("migrate", verbosity=0)
        sequencing, one_job, verifying = verify_speed(args.verify_events, args.jobs)
        print(f"sequencing {args.verify_events:,} pending events: {sequencing:,.0f} events/s")
        print(
            f"verify_chain over {args.verify_events:,} events: {one_job:,.0f} events/s with"
            f" 1 process, {verifying:,.0f} events/s with {args.jobs} (audit_verify default)"
        )
        if args.skip_appends:
            return
        rates: dict[tuple[str, int], float] = {}
        lags: dict[int, tuple[float, float]] = {}
        print(
            f"appends/s, best of {args.repeat} rounds of {args.seconds:.0f} s per cell (writers"
            " are processes); lag: the worst round's"
        )
        print(
            f"{'writers':>8} {'floor':>10} {'one lock':>10} {'batched':>10} {'lag p50/p99 s':>16}"
        )
        designs: list[tuple[str, Append, bool]] = [
            ("floor", plain_insert, False),
            ("lock", one_lock_append, False),
            ("batched", batched_append, True),
        ]
        for writers in WRITERS:
            # Rounds interleave the designs, and each cell keeps its best round: on a shared
            # machine the other load comes and goes, and the best round is the least disturbed.
            for _ in range(args.repeat):
                for name, append, sequencer in designs:
                    reset()
                    rate = run(append, writers, args.seconds, sequencer=sequencer)
                    rates[name, writers] = max(rates.get((name, writers), 0.0), rate)
                    if sequencer:
                        lag = lag_p99()
                        lags[writers] = max(lags.get(writers, lag), lag, key=lambda x: x[1])
                        status = verify_chain()
                        if not status.ok:
                            raise SystemExit(f"FAIL: batched chain does not verify: {status}")
            print(
                f"{writers:>8} {rates['floor', writers]:>10.0f} {rates['lock', writers]:>10.0f}"
                f" {rates['batched', writers]:>10.0f}"
                f" {lags[writers][0]:>7.3f}/{lags[writers][1]:.3f}"
            )
        top = WRITERS[-1]
        vs_floor = rates["batched", top] / rates["floor", top]
        vs_lock = rates["batched", top] / rates["lock", top]
        targets = [
            (f"batched vs floor at {top} writers", f"{vs_floor:.2f}x", f">= {TARGET_VS_FLOOR}x",
             vs_floor >= TARGET_VS_FLOOR),
            (f"batched vs one lock at {top} writers", f"{vs_lock:.1f}x",
             f">= {TARGET_VS_ONE_LOCK:.0f}x", vs_lock >= TARGET_VS_ONE_LOCK),
            (f"sequencing lag p99 at {top} writers", f"{lags[top][1]:.2f} s",
             f"< {TARGET_LAG_P99:.0f} s", lags[top][1] < TARGET_LAG_P99),
            ("verify", f"{verifying:,.0f} events/s", f">= {TARGET_VERIFY:,} events/s",
             verifying >= TARGET_VERIFY),
        ]  # fmt: skip
        for name, measured, target, met in targets:
            print(f"target {name}: {measured} vs {target} {'met' if met else 'missed'}")
    finally:
        SCRATCH.drop()


if __name__ == "__main__":
    main()
