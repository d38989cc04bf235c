"""Benchmark: the service as a whole under gunicorn on PostgreSQL (issue 19).

Starts the production web process (``scripts/serve web``: collectstatic, then gunicorn with
``gunicorn.conf.py``; by default 2 sync workers, WEB_CONCURRENCY/WEB_THREADS override) on a
loopback port, a moto server on another as the STS, and drives them from this machine over
loopback only, bounded in count and time, with 16 keep-alive connections (4 processes of 4
threads of ``http.client``; a sync worker closes each connection after its answer, and the
driver reconnects). Four scenarios, each with requests/s, p50/p99 and errors (non-2xx/3xx or
failed connections: must be 0), and the CPU user+sys seconds of the gunicorn workers, of this
database's PostgreSQL backends, of the load generator and of moto, sampled from /proc before
and after, next to what the whole machine spent (it is shared):

1. sign-in storm: SP-initiated SAML sign-ins of distinct people, each POSTing a real response
   signed by the tests' pysaml2 IdP (tests/saml_idp.py, xmlsec1) to the ACS with its own
   login-start cookie; the login starts go through the same gunicorn first and are not timed,
   nor is the signing;
2. credential_process storm: POST /api/v1/credentials with personal API tokens (the CLI's
   ``credential_process`` refresh), moto over HTTP as the STS;
3. the portal page of the people signed in by scenario 1 (distinct sessions, each with a few
   mapped groups and dozens of entitlements);
4. the floor: a bare Django view rendering a template of the portal page's size on the same
   gunicorn, mounted only here (bench/load_settings.py, bench/load_urls.py).

Rate limits are off (RATE_LIMITS_ENABLED=0): hundreds of sign-ins from one address in seconds are
exactly what they stop. The audit is sequenced in batches (a broker is configured: Redis db 13
unless CELERY_BROKER_URL is set; no worker runs, the events wait unsequenced as they would for a
few seconds in production). Sessions are in Redis (SESSION_CACHE_URL, the same Redis db unless
set; its own key prefix). DEBUG is off.

SCALE (default 1) scales counts and durations: SCALE=0.2 is a ~30 s smoke run. Runs in its own
database ``<DATABASE_URL name>_bench_load``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/load.py``.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from benchdb import ROOT, scratch_database

SCALE = float(os.environ.get("SCALE", "1"))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "4"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))  # connections per process
SIGN_INS = max(40, int(600 * SCALE))
DURATION = max(3.0, 15.0 * SCALE)  # seconds per time-bounded scenario
WARMUP = max(1.0, 2.0 * SCALE)
HOST = "127.0.0.1"
IDP = "corp"
UNITS = ("pb", "dw", "cm", "rt", "ib")
ENVIRONMENTS = ("dev", "test", "prod")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


WEB_PORT = free_port()
STS_PORT = free_port()
BASE_URL = f"http://{HOST}:{WEB_PORT}"

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
os.environ.setdefault("RATE_LIMITS_ENABLED", "0")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Sessions in Redis, as in production (docs/production.md), under a key prefix of this run.
os.environ.setdefault("SESSION_CACHE_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("SESSION_CACHE_PREFIX", f"bench-load-{os.getpid()}")
os.environ["BASE_URL"] = BASE_URL
os.environ.update(
    {
        "AWS_ENDPOINT_URL": f"http://{HOST}:{STS_PORT}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
SCRATCH = scratch_database("bench/load.py", "bench_load")


# --------------------------------------------------------------------------- measuring CPU


def _ticks(pid: int, *, children: bool = False) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # After the command: state is fields[0]; utime, stime, cutime, cstime are fields 11-14.
    used = int(fields[11]) + int(fields[12])
    return used + (int(fields[13]) + int(fields[14]) if children else 0)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _machine_busy() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    """The processes whose CPU is reported. PostgreSQL backends are found in pg_stat_activity
    and remembered with their last reading, so one that exits (a replaced gunicorn worker's
    connection) keeps what it spent; a sampler thread reads every 0.2 s during a run."""

    gunicorn: int = 0
    moto: int = 0
    pg_last: dict[int, int] = field(default_factory=dict)
    _conn: Any = None

    def backends(self) -> list[int]:
        import psycopg

        if self._conn is None:
            self._conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
        return [row[0] for row in rows]

    def sample(self) -> dict[str, float]:
        # The master's own time plus its reaped children (workers replaced under max_requests)
        # plus the live workers: a worker replaced between samples moves from one to the other.
        workers = _ticks(self.gunicorn, children=True) + sum(
            _ticks(p) for p in _children(self.gunicorn)
        )
        for pid in self.backends():
            ticks = _ticks(pid)
            if ticks:
                self.pg_last[pid] = max(ticks, self.pg_last.get(pid, 0))
        return {
            "gunicorn": workers,
            "postgres": sum(self.pg_last.values()),
            "moto": _ticks(self.moto, children=True),
            "machine": _machine_busy(),
            "time": time.monotonic() * TICK,
        }

    @contextmanager
    def sampling(self) -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(0.2):
                self.sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


# --------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    keep_cookie: str = ""  # a Set-Cookie name whose value the driver hands back


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # ms
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    cookies: list[str] = field(default_factory=list)
    cpu: float = 0.0  # seconds, user+sys of the driver process
    first_error: str = ""


def _connection(call_state: dict[str, http.client.HTTPConnection]) -> http.client.HTTPConnection:
    conn = call_state.get("conn")
    if conn is None:
        conn = http.client.HTTPConnection(HOST, WEB_PORT, timeout=30)
        call_state["conn"] = conn
    return conn


def _run_thread(
    calls: list[Call], deadline: float | None, warm_until: float, result: Result, lock: Any
) -> None:
    state: dict[str, http.client.HTTPConnection] = {}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    cookies: list[str] = []
    failures = 0
    first_error = ""
    index = 0
    while True:
        if deadline is None:
            if index >= len(calls):
                break
        elif time.monotonic() >= deadline:
            break
        call = calls[index % len(calls)]
        index += 1
        start = time.perf_counter()
        try:
            conn = _connection(state)
            conn.request(call.method, call.path, body=call.body, headers=call.headers)
            response = conn.getresponse()
            body = response.read()
            status = response.status
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as error:
            state.pop("conn", None)
            failures += 1
            first_error = first_error or repr(error)
            continue
        elapsed = (time.perf_counter() - start) * 1000
        if deadline is not None and time.monotonic() < warm_until:
            continue
        latencies.append(elapsed)
        statuses[status] += 1
        if status >= 400 and not first_error:
            first_error = f"{status} {call.method} {call.path}: {body[:300]!r}"
        if call.keep_cookie:
            jar: SimpleCookie = SimpleCookie()
            for header in response.headers.get_all("Set-Cookie") or []:
                jar.load(header)
            cookies.append(jar[call.keep_cookie].value if call.keep_cookie in jar else "")
    with lock:
        result.latencies += latencies
        result.statuses.update(statuses)
        result.failures += failures
        result.cookies += cookies
        result.first_error = result.first_error or first_error


def _run_process(args: tuple[list[list[Call]], float | None, float]) -> Result:
    per_thread, duration, warmup = args
    before = os.times()
    result = Result()
    lock = threading.Lock()
    now = time.monotonic()
    deadline = None if duration is None else now + warmup + duration
    threads = [
        threading.Thread(
            target=_run_thread, args=(calls, deadline, now + warmup, result, lock), daemon=True
        )
        for calls in per_thread
        if calls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = os.times()
    result.cpu = (after.user - before.user) + (after.system - before.system)
    return result


@dataclass
class Measured:
    name: str
    requests: int
    seconds: float
    p50: float
    p99: float
    errors: int
    cpu: dict[str, float]
    statuses: Counter[int]
    first_error: str
    cookies: list[str]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def drive(
    name: str, calls: list[Call], procs: Processes, *, duration: float | None, warmup: float = 0
) -> Measured:
    """Send ``calls`` over PROCESSES x THREADS connections: each call once, in order per
    connection (duration None), or round and round until ``duration`` after ``warmup``."""
    connections = PROCESSES * THREADS
    # Call n goes to connection n % connections; a cookie-keeping run keeps the call order.
    per_connection = [calls[i::connections] for i in range(connections)]
    work = [
        (per_connection[p * THREADS : (p + 1) * THREADS], duration, warmup)
        for p in range(PROCESSES)
    ]
    from django.db import connections as db_connections

    db_connections.close_all()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(PROCESSES) as pool:
        # Warm-up excluded: sampled just after the workers started, as close as /proc allows.
        pending = pool.map_async(_run_process, work)
        if warmup:
            time.sleep(warmup)
        before = procs.sample()
        started = time.monotonic()
        with procs.sampling():
            results = pending.get()
        seconds = time.monotonic() - started
        after = procs.sample()
    latencies = [ms for r in results for ms in r.latencies]
    statuses: Counter[int] = Counter()
    for r in results:
        statuses.update(r.statuses)
    errors = sum(r.failures for r in results) + sum(
        n for status, n in statuses.items() if status >= 400
    )
    cpu = {key: (after[key] - before[key]) / TICK for key in before}
    # The driver's own CPU covers its warm-up too: scale it to the measured window.
    total = duration + warmup if duration is not None else None
    share = (duration / total) if total else 1.0
    cpu["load generator"] = sum(r.cpu for r in results) * share
    cpu["window"] = cpu.pop("time")
    # With a time bound, cookies come back in connection order: realign them to the calls.
    cookies = [c for r in results for c in r.cookies]
    return Measured(
        name=name,
        requests=len(latencies),
        seconds=seconds if duration is None else duration,
        p50=statistics.median(latencies) if latencies else 0.0,
        p99=percentile(latencies, 99) if latencies else 0.0,
        errors=errors,
        cpu=cpu,
        statuses=statuses,
        first_error=next((r.first_error for r in results if r.first_error), ""),
        cookies=cookies,
    )


def report(m: Measured) -> None:
    cpu = m.cpu
    ours = cpu["gunicorn"] + cpu["postgres"] + cpu["load generator"] + cpu["moto"]
    print(
        f"{m.name:34} {m.rps:9.1f} req/s  p50 {m.p50:7.2f} ms  p99 {m.p99:7.2f} ms  "
        f"errors {m.errors}  (n={m.requests}, {m.seconds:.1f} s)"
    )
    print(
        f"{'':34} CPU s: gunicorn {cpu['gunicorn']:.2f}, postgres backends "
        f"{cpu['postgres']:.2f}, load generator {cpu['load generator']:.2f}, moto "
        f"{cpu['moto']:.2f}; whole machine {cpu['machine']:.2f} (others "
        f"{max(0.0, cpu['machine'] - ours):.2f}) of {(os.cpu_count() or 1) * cpu['window']:.1f} "
        f"in the {cpu['window']:.1f} s sampled"
    )
    if m.errors:
        print(f"{'':34} statuses {dict(m.statuses)}; first error: {m.first_error}")


# --------------------------------------------------------------------------- the world


@contextmanager
def services(floor_dir: str, log_path: Path) -> Iterator[Processes]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "load_settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
            "BENCH_FLOOR_TEMPLATES": floor_dir,
            "WEB_BIND": f"{HOST}:{WEB_PORT}",
            "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
            "WEB_THREADS": os.environ.get("WEB_THREADS", "1"),
            "STATIC_ROOT": str(Path(floor_dir) / "static"),
            "PYTHON": sys.executable,
        }
    )
    moto_bin = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert moto_bin, "moto_server is missing from the virtualenv"
    log = log_path.open("wb")
    moto = subprocess.Popen(  # noqa: S603 - the virtualenv's moto server
        [moto_bin, "-H", HOST, "-p", str(STS_PORT)], stdout=log, stderr=subprocess.STDOUT
    )
    web = subprocess.Popen(  # noqa: S603 - this checkout's scripts/serve
        [str(ROOT / "scripts" / "serve"), "web"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(WEB_PORT, "/healthz", web, log_path)
        _wait_for(STS_PORT, "/moto-api/", moto, log_path)
        yield Processes(gunicorn=web.pid, moto=moto.pid)
    finally:
        for proc in (web, moto):
            proc.send_signal(signal.SIGTERM)
        for proc in (web, moto):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _wait_for(port: int, path: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"a service exited early:\n{log_path.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"port {port} never answered:\n{log_path.read_text()[-3000:]}")


def seed() -> None:
    """Five business units of ten accounts over three environments, three roles, and per unit
    three groups: cloud engineers (every environment), readers (every environment) and
    operators (prod only)."""
    from datetime import timedelta

    from federation.models import (
        Access,
        Account,
        BusinessUnit,
        GroupMapping,
        LogicalRole,
        MappingVersion,
    )

    roles = {
        name: LogicalRole.objects.create(name=name, max_session=timedelta(hours=hours))
        for name, hours in (("cloud-eng", 4), ("read-only", 8), ("operator", 1))
    }
    for u, slug in enumerate(UNITS):
        unit = BusinessUnit.objects.create(slug=slug, name=f"Unit {slug.upper()}")
        for n in range(10):
            Account.objects.create(
                account_id=f"{u + 1}{n:011d}",
                alias=f"{slug}-{ENVIRONMENTS[n % 3]}-{n:02d}",
                business_unit=unit,
                environment=ENVIRONMENTS[n % 3],
            )
        GroupMapping.objects.create(
            group=f"aws-{slug}-cloud-eng",
            role=roles["cloud-eng"],
            business_unit=unit,
            access=Access.STANDING,
        )
        GroupMapping.objects.create(
            group=f"aws-{slug}-read-only",
            role=roles["read-only"],
            business_unit=unit,
            access=Access.STANDING,
        )
        GroupMapping.objects.create(
            group=f"aws-{slug}-operator",
            role=roles["operator"],
            business_unit=unit,
            environments=["prod"],
            access=Access.ELIGIBLE,
            max_grant=timedelta(hours=4),
        )
    MappingVersion.objects.create(number=1, actor="bench", source="seed", document={})


def groups_of(n: int) -> list[str]:
    """Person n: cloud engineer in one unit, reader in another, a few unmapped groups."""
    home, other = UNITS[n % len(UNITS)], UNITS[(n + 2) % len(UNITS)]
    return [
        f"aws-{home}-cloud-eng",
        f"aws-{other}-read-only",
        f"aws-{home}-operator",
        *(f"team-{n % 40}-{k}" for k in range(5)),
    ]


_SIGNER: list[Any] = []  # the pysaml2 IdP, set before the signing processes fork


def _sign(item: tuple[Any, int]) -> str:
    from tests.saml_idp import b64

    seen, n = item
    xml = _SIGNER[0].response_xml(
        seen,
        subject=f"00u-person-{n:05d}",
        attributes={
            "email": [f"person{n:05d}@corp.example"],
            "groups": groups_of(n),
            "manager": ["boss@corp.example"],
        },
    )
    return b64(xml)


def prepare_sign_ins(procs: Processes, workdir: Path) -> tuple[list[Call], str]:
    """Login starts through gunicorn, one after another, and responses signed by pysaml2 in two
    processes: neither is timed."""
    from django.test import Client

    from federation.idp import saml
    from tests.saml_idp import make_flow

    flow = make_flow(IDP, workdir, Client(HTTP_HOST=f"{HOST}:{WEB_PORT}"))
    cookie_name = saml.browser_cookie(flow.idp).name
    acs = urlsplit(saml.acs_url(flow.idp)).path
    conn = http.client.HTTPConnection(HOST, WEB_PORT, timeout=30)
    seen_items = []
    cookies = []
    for _ in range(SIGN_INS):
        conn.request("GET", f"/saml/{IDP}/login/")
        response = conn.getresponse()
        response.read()
        assert response.status == 302, response.status
        jar: SimpleCookie = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        cookies.append(jar[cookie_name].value)
        seen_items.append(flow.signer.read_redirect(response.headers["Location"]))
        if response.will_close:
            conn.close()
    flow.signer.server  # noqa: B018 -- built once before the fork
    _SIGNER[:] = [flow.signer]
    from django.db import connections as db_connections

    db_connections.close_all()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        signed = pool.map(
            _sign, list(zip(seen_items, range(len(seen_items)), strict=True)), chunksize=8
        )
    calls = [
        Call(
            "POST",
            acs,
            {
                "Host": f"{HOST}:{WEB_PORT}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"{cookie_name}={cookie}",
            },
            urlencode({"SAMLResponse": encoded, "RelayState": seen.relay_state}).encode(),
            keep_cookie="sessionid",
        )
        for encoded, seen, cookie in zip(signed, seen_items, cookies, strict=True)
    ]
    return calls, cookie_name


def write_floor_template(directory: Path, size: int) -> None:
    """A template the size of the portal page, with one variable, no tags."""
    head = "<!doctype html><html><head><title>floor</title></head><body><p>{{ path }}</p>\n"
    tail = "</body></html>\n"
    filler_line = "<p>" + "lorem ipsum dolor sit amet " * 3 + "</p>\n"
    filler = ""
    while len(head) + len(filler) + len(tail) < size:
        filler += filler_line
    text = head + filler[: max(0, size - len(head) - len(tail))] + tail
    (directory / "load_floor.html").write_text(text)


def main() -> None:
    SCRATCH.recreate()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    seed()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    floor_dir = workdir / "templates"
    floor_dir.mkdir()
    write_floor_template(floor_dir, 1000)  # resized below once the portal's size is known
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    t0 = time.monotonic()
    try:
        with services(str(floor_dir), workdir / "services.log") as procs:
            run(procs, workdir, floor_dir)
    finally:
        SCRATCH.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {' '.join(load_before)} before, "
        f"{' '.join(load_after)} after; whole bench {time.monotonic() - t0:.0f} s"
    )


def run(procs: Processes, workdir: Path, floor_dir: Path) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from federation.issuance.tokens import create_api_token
    from federation.models import User

    workers = os.environ.get("WEB_CONCURRENCY", "2")
    kind = "sync" if os.environ.get("WEB_THREADS", "1") == "1" else "gthread"
    print(
        f"gunicorn: {workers} {kind} workers (scripts/serve web, gunicorn.conf.py), DEBUG=0, "
        f"RATE_LIMITS_ENABLED={os.environ['RATE_LIMITS_ENABLED']}, "
        f"SESSION_CACHE_URL={'set' if os.environ.get('SESSION_CACHE_URL') else 'unset'}, "
        f"{PROCESSES * THREADS} connections from {PROCESSES} driver processes, SCALE={SCALE}"
    )
    t0 = time.monotonic()
    sign_in_calls, _ = prepare_sign_ins(procs, workdir)
    print(
        f"prepared {len(sign_in_calls)} login starts and signed responses "
        f"({time.monotonic() - t0:.0f} s, not timed)"
    )
    results: dict[str, Measured] = {}

    m = drive("1. SAML sign-in storm (ACS POST)", sign_in_calls, procs, duration=None)
    results["signin"] = m
    report(m)
    sessions = [c for c in m.cookies if c]
    assert len(sessions) == len(sign_in_calls), (len(sessions), m.first_error)

    now = timezone.now()
    people = list(User.objects.order_by("pk")[:100])
    tokens = [
        create_api_token(
            person, name="laptop", lifetime=timedelta(days=30), now=now, ip=None
        ).plaintext
        for person in people
    ]
    issuance_calls = []
    for person, token in zip(people, tokens, strict=True):
        n = int(person.email[6:11])
        unit = UNITS.index(groups_of(n)[0].split("-")[1])
        issuance_calls.append(
            Call(
                "POST",
                "/api/v1/credentials",
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Host": f"{HOST}:{WEB_PORT}",
                },
                json.dumps({"account": f"{unit + 1}{0:011d}", "role": "cloud-eng"}).encode(),
            )
        )
    m = drive(
        "2. credential_process storm (API)",
        issuance_calls,
        procs,
        duration=DURATION,
        warmup=WARMUP,
    )
    results["issuance"] = m
    report(m)

    portal_calls = [
        Call("GET", "/", {"Host": f"{HOST}:{WEB_PORT}", "Cookie": f"sessionid={s}"})
        for s in sessions
    ]
    page = _fetch(portal_calls[0])
    assert b"cloud-eng" in page, page[:500]
    write_floor_template(floor_dir, len(page))
    floor_calls = [Call("GET", "/bench-floor/", {"Host": f"{HOST}:{WEB_PORT}"})]
    floor_size = len(_fetch(floor_calls[0]))
    print(f"portal page {len(page)} bytes, floor page {floor_size} bytes")

    rounds: list[tuple[Measured, Measured]] = []
    for _ in range(2):
        floor = drive(
            "4. floor: bare view, same size",
            floor_calls,
            procs,
            duration=DURATION / 2,
            warmup=WARMUP,
        )
        portal = drive(
            "3. portal page, signed-in people",
            portal_calls,
            procs,
            duration=DURATION / 2,
            warmup=WARMUP,
        )
        report(portal)
        report(floor)
        rounds.append((portal, floor))

    signin, issuance = results["signin"], results["issuance"]
    portal_rps = sum(p.rps for p, _ in rounds) / len(rounds)
    floor_rps = sum(f.rps for _, f in rounds) / len(rounds)
    portal_p99 = max(p.p99 for p, _ in rounds)
    floor_p99 = max(f.p99 for _, f in rounds)
    errors = signin.errors + issuance.errors + sum(p.errors + f.errors for p, f in rounds)
    print(f"sign-ins/s: {signin.rps:.1f} (p50 {signin.p50:.1f} ms, p99 {signin.p99:.1f} ms)")
    print(f"issuances/s: {issuance.rps:.1f} (p50 {issuance.p50:.1f} ms, p99 {issuance.p99:.1f} ms)")
    print(f"floor: {floor_rps:.0f} req/s, p99 {floor_p99:.1f} ms (worst round); errors {errors}")
    verdict = "met" if portal_rps >= 0.5 * floor_rps and errors == 0 else "missed"
    print(f"target portal_rps: {portal_rps:.0f} vs >=50% of floor ({floor_rps:.0f}) {verdict}")
    verdict = "met" if portal_p99 < 50 and errors == 0 else "missed"
    print(f"target portal_p99: {portal_p99:.1f} ms vs <50 ms {verdict}")


def _fetch(call: Call) -> bytes:
    conn = http.client.HTTPConnection(HOST, WEB_PORT, timeout=30)
    conn.request(call.method, call.path, body=call.body, headers=call.headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, (response.status, body[:300])
    return body


if __name__ == "__main__":
    main()
