"""Benchmark: what a dead or hung broker costs one publish of an owed effect (issue #17).

Publishes the mail task as ``services/effects.publish`` does (``apply_async`` with the outbox
row id) against two loopback endpoints: a refused port (broker down) and a port that accepts
and never answers (broker blackholed). Two configurations in the same run:

* shipped: the settings' connect/socket timeouts and publish retry policy;
* baseline: kombu's defaults (no socket timeout; retry policy 3 tries), as before issue #17.

A baseline publish still waiting after the guard is reported as ">= guard (hung)".
Prints each time and ends with ``target`` lines: each shipped publish within 2 s.
Needs no database. Usage: ``python bench/broker_outage.py [--guard SECONDS]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "federation.settings")
os.environ.setdefault("DEBUG", "1")
# Celery prefers this variable over its configuration; the benchmark sets the URL itself.
os.environ.pop("CELERY_BROKER_URL", None)

import django

django.setup()

import kombu.pools  # noqa: E402
from django.conf import settings  # noqa: E402

from access_requests import tasks  # noqa: E402
from federation.celery import app  # noqa: E402

TARGET_SECONDS = 2.0


def configure(url: str, *, shipped: bool) -> None:
    conf: dict[str, Any] = {"broker_url": url, "task_always_eager": False}
    if shipped:
        conf |= {
            "broker_connection_timeout": settings.CELERY_BROKER_CONNECTION_TIMEOUT,
            "broker_transport_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "task_publish_retry_policy": settings.CELERY_TASK_PUBLISH_RETRY_POLICY,
        }
    else:
        conf |= {
            "broker_connection_timeout": 4,
            "broker_transport_options": {},
            "task_publish_retry_policy": {
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
        }
    app.conf.update(**conf)
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def publish_seconds(guard: float) -> float | None:
    """Seconds one publish took to fail (or succeed); None if still waiting after ``guard``."""
    finished: list[float] = []

    def run() -> None:
        started = time.monotonic()
        try:
            tasks.send_request_email.apply_async(args=[1, "approved"], kwargs={"effect_id": 1})
        except Exception as exc:
            print(f"  publish failed: {type(exc).__name__}: {exc}")
        finished.append(time.monotonic() - started)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=guard)
    return finished[0] if finished else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guard", type=float, default=20.0)
    guard = parser.parse_args().guard
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    endpoints = {
        "refused": f"redis://127.0.0.1:{refused_port}/0",
        "blackholed": f"redis://127.0.0.1:{hung.getsockname()[1]}/0",
    }
    results: dict[tuple[str, str], float | None] = {}
    for config in ("baseline", "shipped"):
        for fault, url in endpoints.items():
            configure(url, shipped=config == "shipped")
            seconds = publish_seconds(guard)
            results[config, fault] = seconds
            shown = f"{seconds:.2f} s" if seconds is not None else f">= {guard:.0f} s (hung)"
            print(f"{config:8} broker {fault:10}: one publish {shown}")
    for fault in endpoints:
        seconds = results["shipped", fault]
        met = seconds is not None and seconds <= TARGET_SECONDS
        measured = f"{seconds:.2f}s" if seconds is not None else "hung"
        print(
            f"target publish_{fault}_broker: {measured} vs <= {TARGET_SECONDS:.0f}s "
            f"{'met' if met else 'missed'}"
        )


if __name__ == "__main__":
    main()
