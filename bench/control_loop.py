"""Benchmark: the control loop's reads, 500 accounts x 10 roles, against a moto server over HTTP.

Sets up a scratch database with 500 accounts (10 business units, dev/test/prod) and 10 logical
roles every account reaches, applies them with ``roles_apply``'s service (figure printed), then
times, with cold management sessions each run:

* ``roles_plan`` with nothing to do (``plan_roles``), and a full ``drift_check``
  (``check_drift``), both at PROVISIONING_CONCURRENCY;
* the floor: the bare boto3 calls that read the same roles (per account: AssumeRole into the
  management role, ListRoles, GetAccountAuthorizationDetails), serially and with the same
  concurrency.

IAM calls are counted on the server (moto's recorder) in a separate, untimed run. Prints one
``target`` line each for plan and drift time against the concurrent floor (within 1.3x) and
for calls per account (O(1) pages: 3 with one page each).
Usage: ``DATABASE_URL=postgres://... python bench/control_loop.py [--accounts N] [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchdb import scratch_database

os.environ.setdefault(
    "MOTO_RECORDER_FILEPATH", os.path.join(tempfile.gettempdir(), f"moto-bench-{os.getpid()}.jsonl")
)
os.environ["LOG_LEVEL"] = "ERROR"
os.environ.pop("CELERY_BROKER_URL", None)

ROLES = [
    "admin", "security", "operations", "network-eng", "database-eng",
    "cloud-eng", "release", "observability", "app-eng", "cost-mgmt",
]  # fmt: skip
BUSINESS_UNITS = 10
TARGET_RATIO = 1.3
CONCURRENCY = 8
MANAGEMENT = "fedaccess-management"
BROKER = "arn:aws:iam::999999999999:role/fedaccess-broker"


def mapping_file(accounts: int) -> str:
    lines = ["business_units:"]
    lines += [f"  - {{slug: bu{b}, name: Unit {b}}}" for b in range(BUSINESS_UNITS)]
    lines.append("accounts:")
    envs = ["dev", "test", "prod"]
    for n in range(accounts):
        canary = ", canary: true" if n < 2 else ""
        lines.append(
            f'  - {{id: "{100000000000 + n}", alias: acct-{n}, '
            f"business_unit: bu{n % BUSINESS_UNITS}, environment: {envs[n % 3]}{canary}}}"
        )
    lines.append("roles:")
    lines += [f"  - {{name: {role}}}" for role in ROLES]
    lines.append("mappings:")
    for b in range(BUSINESS_UNITS):
        for role in ROLES:
            lines.append(
                f"  - {{group: g-bu{b}-{role}, role: {role}, business_unit: bu{b}, "
                "access: standing}"
            )
    return "\n".join(lines) + "\n"


def floor_read(url: str, account_id: str) -> int:
    """The bare calls that read one account's roles; returns how many roles it saw."""
    import boto3

    credentials = boto3.client("sts", endpoint_url=url, region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{MANAGEMENT}", RoleSessionName="floor"
    )["Credentials"]
    client = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    roles = 0
    for page in client.get_paginator("list_roles").paginate():
        roles += len(page["Roles"])
    for page in client.get_paginator("get_account_authorization_details").paginate(Filter=["Role"]):
        roles += 0 * len(page["RoleDetailList"])
    return roles


def median_seconds(runs: int, action: Callable[[], Any], before: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def recorded_actions(url: str) -> Counter[str]:
    import base64
    from urllib.parse import parse_qsl

    import requests

    text = requests.get(f"{url}/moto-api/recorder/download-recording", timeout=60).text
    found: Counter[str] = Counter()
    for line in text.splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode()
        action = dict(parse_qsl(body)).get("Action")
        if action:
            found[action] += 1
    return found


def recording(url: str, step: str) -> None:
    import requests

    requests.post(f"{url}/moto-api/recorder/{step}", timeout=10).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    scratch = scratch_database("bench/control_loop.py", "bench_control_loop")
    scratch.recreate()
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.aws import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        run(url, args.accounts, args.runs)
    finally:
        server.stop()
        scratch.drop()
        if os.path.exists(os.environ["MOTO_RECORDER_FILEPATH"]):
            os.remove(os.environ["MOTO_RECORDER_FILEPATH"])


def run(url: str, accounts: int, runs: int) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    settings.DEBUG = False
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    call_command("migrate", verbosity=0)
    settings.IAM_MANAGEMENT_ROLE_NAME = MANAGEMENT
    settings.BROKER_PRINCIPAL_ARN = BROKER
    settings.STS_ENDPOINTS = []
    settings.STS_REGIONS = ["us-east-1"]
    settings.PROVISIONING_CONCURRENCY = CONCURRENCY

    from federation.aws import iam, sts
    from federation.mappings import apply_document, parse_document
    from federation.provisioning.apply import start_rollout
    from federation.provisioning.drift import check_drift
    from federation.provisioning.plan import plan_roles

    apply_document(
        parse_document(mapping_file(accounts)), actor="bench", source="import", now=timezone.now()
    )
    account_ids = [str(100000000000 + n) for n in range(accounts)]
    print(
        f"{accounts} accounts x {len(ROLES)} roles against moto over HTTP; "
        f"concurrency {CONCURRENCY}"
    )

    start = time.perf_counter()
    rollout = start_rollout(actor="bench", now=timezone.now())
    applied = time.perf_counter() - start
    assert rollout is not None and rollout.state == "done", rollout
    print(f"roles_apply (create {accounts * len(ROLES)} roles in waves): {applied:.1f} s")

    def cold() -> None:
        sts.reset_clients()
        iam.reset_clients()

    def plan() -> None:
        result = plan_roles()
        assert not result.pending and not result.errors

    def drift() -> None:
        report = check_drift(now=timezone.now())
        assert not report.open and not report.errors

    def floor_serial() -> None:
        assert sum(floor_read(url, a) for a in account_ids) == accounts * len(ROLES)

    def floor_concurrent() -> None:
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            seen = sum(pool.map(lambda a: floor_read(url, a), account_ids))
        assert seen == accounts * len(ROLES)

    timings = {
        "floor, serial": median_seconds(runs, floor_serial, cold),
        f"floor, {CONCURRENCY} at once": median_seconds(runs, floor_concurrent, cold),
        "roles_plan, nothing to do": median_seconds(runs, plan, cold),
        "drift_check, in sync": median_seconds(runs, drift, cold),
    }
    for name, seconds in timings.items():
        print(f"  {name:28} {seconds:7.2f} s  ({seconds / accounts * 1000:.1f} ms per account)")

    cold()
    recording(url, "reset-recording")
    recording(url, "start-recording")
    plan()
    recording(url, "stop-recording")
    calls = recorded_actions(url)
    per_account = sum(calls.values()) / accounts
    print(f"  roles_plan calls: {dict(calls)} = {per_account:.2f} per account")

    floor = timings[f"floor, {CONCURRENCY} at once"]
    for name, key in (
        ("roles_plan", "roles_plan, nothing to do"),
        ("drift_check", "drift_check, in sync"),
    ):
        ratio = timings[key] / floor
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        print(f"target {name}_vs_floor: {ratio:.2f}x vs {TARGET_RATIO}x {verdict}")
    verdict = "met" if per_account <= 3 else "missed"
    print(f"target iam_calls_per_account: {per_account:.2f} vs 3 {verdict}")


if __name__ == "__main__":
    main()
