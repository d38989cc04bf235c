"""/metrics in prometheus-client's multiprocess mode (issue 18 item 3): separate processes, a
real Celery worker on Redis among them, each write their files into PROMETHEUS_MULTIPROC_DIR
and one scrape sums them; Celery task failures and retries are counted through Celery's
signals; a metrics directory that breaks under a running process costs a log line, never the
counted action."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from access_requests.services import workflow
from federation.celery import app as celery_app
from federation.models import MappingVersion
from tests.access_requests.conftest import World, build_world
from tests.access_requests.live import (
    BROKER_URL,
    MailSink,
    WebhookSink,
    Worker,
    run_worker,
    wait_for,
    worker_database_url,
)
from tests.aws import MotoServer
from tests.metrics import Scrape, parse

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)

_versions = itertools.count(1000)


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus-multiproc")


@pytest.fixture(scope="module")
def metrics_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    moto_server: MotoServer,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    tmp_path_factory: pytest.TempPathFactory,
    metrics_dir: Path,
) -> Iterator[Worker]:
    """A real worker (with beat) on the test Redis db, counting into ``metrics_dir``."""
    with django_db_blocker.unblock():
        database_url = worker_database_url()
    yield from run_worker(
        BROKER_URL,
        database_url,
        mail_sink,
        webhook_sink,
        tmp_path_factory,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )


@pytest.fixture
def world(settings: SettingsWrapper, mail_sink: MailSink, webhook_sink: WebhookSink) -> World:
    settings.SLACK_WEBHOOK_URL = webhook_sink.url
    mail_sink.reset()
    webhook_sink.reset()
    built = build_world()
    # The worker memoises entitlements per mapping version: announce the rows written here.
    MappingVersion.objects.create(number=next(_versions), actor="test", source="seed", document={})
    return built


def _count_in_a_process(metrics_dir: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "federation.settings",
        "SECRET_KEY": "x" * 50,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
    }
    prelude = "import django\ndjango.setup()\nfrom federation.observability import metrics\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _scrape(settings: SettingsWrapper, metrics_dir: Path) -> Scrape:
    settings.PROMETHEUS_MULTIPROC_DIR = str(metrics_dir)
    answer = Client().get("/metrics")
    assert answer.status_code == 200
    return parse(answer.content.decode())


def test_two_processes_and_a_celery_worker_are_summed_on_scrape(
    metrics_worker: Worker,
    metrics_dir: Path,
    world: World,
    webhook_sink: WebhookSink,
    settings: SettingsWrapper,
) -> None:
    for times in (1, 2):
        done = _count_in_a_process(
            metrics_dir,
            f"for _ in range({times}):\n"
            "    metrics.record_signin(idp='corp', protocol='saml')\n"
            "metrics.record_sts_call(operation='assume_role', region='eu-west-1',"
            " outcome='ok', seconds=0.2)\n",
        )
        assert done.returncode == 0, done.stderr
    # The worker: a webhook that fails once (a retry), and a task that cannot succeed.
    webhook_sink.fail_next = 1
    workflow.submit_request(
        world.requester,
        account_id="111111111111",
        role="admin",
        justification="INC-9",
        duration=timedelta(hours=1),
        now=timezone.now(),
    )
    celery_app.send_task("access_requests.tasks.apply_revocation_policy", args=[987654321])

    def counted() -> Scrape | None:
        got = _scrape(settings, metrics_dir)
        retried = got.value(
            "fedaccess_celery_task_retries_total", task="access_requests.tasks.post_request_webhook"
        )
        failed = got.value(
            "fedaccess_celery_task_failures_total",
            task="access_requests.tasks.apply_revocation_policy",
        )
        return got if retried >= 1 and failed >= 1 else None

    got = wait_for(counted, timeout=60, what="the worker's retry and failure in the scrape")
    # Each process's file, summed: 1 + 2 sign-ins, two STS observations in one histogram.
    assert got.value("fedaccess_signins_total", idp="corp", protocol="saml") == 3
    latency = {"operation": "assume_role", "region": "eu-west-1", "outcome": "ok"}
    assert got.value("fedaccess_sts_request_duration_seconds_count", **latency) == 2
    assert got.value("fedaccess_sts_request_duration_seconds_sum", **latency) == pytest.approx(0.4)
    assert got.value("fedaccess_sts_request_duration_seconds_bucket", le="0.25", **latency) == 2
    # The worker counted its own work in its own file too (the request it saw filed elsewhere
    # was counted by this process, in memory: not in the directory).
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 3
    # The worker's own lines are JSON and name the task they were written in.
    lines = [json.loads(line) for line in metrics_worker.output().splitlines() if line[:1] == "{"]
    webhook = "access_requests.tasks.post_request_webhook["
    assert any(str(line.get("task", "")).startswith(webhook) for line in lines)
    # The database gauges come with it.
    assert got.value("fedaccess_access_requests_pending") == 1


def test_a_broken_metrics_directory_costs_a_log_line_not_the_action(tmp_path: Path) -> None:
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    # The directory is fine at start and gone by the first count (a wiped volume).
    done = _count_in_a_process(
        doomed,
        "import shutil, os\n"
        "shutil.rmtree(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
        "metrics.record_signin(idp='corp', protocol='saml')\n"
        "metrics.record_task_failure('x')\n"
        "print('the action went on')\n",
    )
    assert done.returncode == 0, done.stderr
    assert "the action went on" in done.stdout
    assert "metrics: could not record record_signin" in done.stderr
    assert "metrics: could not record record_task_failure" in done.stderr
