"""The duplicate-pending-request rule on SQLite (the demo's database), in its own process.

The suite runs on PostgreSQL; SQLite words its unique-constraint error without the constraint's
name, so a rule that read the error message turned a second request into a 500 there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
from datetime import timedelta
from django.utils import timezone
from access_requests.refusals import DuplicateRequest
from access_requests.services.workflow import submit_request
from federation.models import User

alice = User.objects.get(email="alice@example.com")
first = dict(account_id="{account}", role="admin", justification="incident 42",
             duration=timedelta(hours=1), now=timezone.now())
submit_request(alice, **first)
try:
    submit_request(alice, **first)
except DuplicateRequest as refusal:
    print("refused:", refusal.code)
"""


@pytest.mark.django_db(False)
def test_second_pending_request_is_refused_by_rule_on_sqlite(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DEMO_MODE": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--no-input")
    manage("seed_demo")
    # pb-prod (222222222222): alice is eligible for admin there in the demo data set.
    assert "refused: duplicate_request" in manage(
        "shell", "-c", SCRIPT.format(account="222222222222")
    )
