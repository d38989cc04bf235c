"""Real services for task tests: a local SMTP server (aiosmtpd), a local webhook receiver, and a
Celery worker subprocess (with beat) on the Redis broker, all on loopback.

The worker reads the *test* database (pytest-django's ``test_<name>``), so tests using it must be
``transaction=True``: it only sees committed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.db import connection

from federation.celery import app as celery_app
from tests.aws import MotoServer, free_port

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@dataclass
class MailSink:
    """Collects delivered messages; ``fail_next`` makes the next N deliveries get a 451, and an
    address in ``refuse_once`` is refused (450 at RCPT) the next time it is named."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    fail_next: int = 0
    refused: int = 0
    refuse_once: set[str] = field(default_factory=set)
    # Addresses whose RCPT gets no answer while they are in ``hold`` (a slow mail server); each
    # held RCPT is counted in ``held``.
    hold: set[str] = field(default_factory=set)
    held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.hold:
            with self.lock:
                self.held += 1
            while address in self.hold:
                await asyncio.sleep(0.1)
        with self.lock:
            if address in self.refuse_once:
                self.refuse_once.discard(address)
                self.refused += 1
                return "450 4.2.1 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self.refused += 1
                return "451 4.3.0 try again later"
            assert isinstance(envelope.content, bytes)
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.fail_next = self.refused = 0
            self.refuse_once.clear()
            self.hold.clear()
            self.held = 0


@dataclass
class WebhookSink:
    port: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/slack"

    def reset(self) -> None:
        with self.lock:
            self.posts.clear()
            self.fail_next = self.refused = 0


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with sink.lock:
                failing = sink.fail_next > 0
                if failing:
                    sink.fail_next -= 1
                    sink.refused += 1
                else:
                    sink.posts.append(json.loads(body))
            self.send_response(503 if failing else 200)
            self.end_headers()
            self.wfile.write(b"busy" if failing else b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


def worker_database_url() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def use_broker(**conf: Any) -> None:
    """Point this process's Celery app at another broker. The connection pools are built from
    the configuration on first use (an eager test may have built them for the default broker),
    so they are dropped and rebuilt lazily from the new one."""
    celery_app.conf.update(**conf)
    # kombu keeps process-wide pools per broker URL; close and forget them all, so nothing
    # (eager apply_async acquires a producer too) is handed a pool closed here.
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@dataclass(frozen=True)
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    moto_server: MotoServer,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """A real worker with embedded beat (expiry every second) on the test Redis db; this process
    sends its tasks there too instead of running them eagerly."""
    with django_db_blocker.unblock():
        database_url = worker_database_url()
    yield from run_worker(BROKER_URL, database_url, mail_sink, webhook_sink, tmp_path_factory)


@dataclass
class PrivateBroker:
    """A redis-server of this test run's own, on its own port, that a drill may stop and start
    (never the machine's shared Redis)."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=20, what="the private redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(free_port(), tmp_path_factory.mktemp("redis"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def private_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    moto_server: MotoServer,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    private_broker: PrivateBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """A worker with beat (outbox relay every second) on the private broker a drill may stop."""
    with django_db_blocker.unblock():
        database_url = worker_database_url()
    yield from run_worker(
        private_broker.url, database_url, mail_sink, webhook_sink, tmp_path_factory
    )


def run_worker(
    broker_url: str,
    database_url: str,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    tmp_path_factory: pytest.TempPathFactory,
    **extra_env: str,
) -> Iterator[Worker]:
    workdir = tmp_path_factory.mktemp("celery")
    log = workdir / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(mail_sink.port),
        "DEFAULT_FROM_EMAIL": "aws-access@corp.example",
        "SLACK_WEBHOOK_URL": webhook_sink.url,
        "ACCESS_EXPIRY_INTERVAL_SECONDS": "1",
        "OUTBOX_RELAY_INTERVAL_SECONDS": "1",
        "OUTBOX_RELAY_GRACE_SECONDS": "1",
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    env.pop("DEBUG", None)
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager")}
    use_broker(broker_url=broker_url, task_always_eager=False)
    celery_app.control.purge()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "federation",
                "worker",
                "--beat",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                f"--schedule={workdir / 'beat-schedule'}",
                f"--hostname=test-{secrets.token_hex(4)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group: the embedded beat is a child process, which outlives a
            # worker killed with SIGKILL (the drills do that) unless the group is stopped.
            start_new_session=True,
        )
    worker = Worker(process, log)
    try:
        wait_for(
            lambda: "ready." in worker.output() or process.poll() is not None,
            timeout=60,
            what="the Celery worker to start",
        )
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{worker.output()}")
        yield worker
    finally:
        _signal_group(process, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        _signal_group(process, signal.SIGKILL)  # whatever of the group is left, beat included
        process.wait(timeout=10)
        celery_app.control.purge()
        use_broker(**saved)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
