"""What people and operators see while the database is down (issue #17): pages answer a 503
"briefly unavailable" page, the API a JSON 503, and the mapping commands one clear line and a
non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from federation.models import MappingVersion
from tests.aws import free_port
from tests.factories import UserFactory
from tests.mapping_samples import SAMPLE_MAPPINGS, mapping_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database_down() -> Iterator[None]:
    """Point this process's connection at a port nobody listens on, as a database server that
    went away looks to the service; restored afterwards."""
    saved = connection.settings_dict["PORT"], connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", free_port()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"], connection.settings_dict["HOST"] = saved


@pytest.mark.django_db(transaction=True)
def test_portal_answers_a_503_page_while_the_database_is_down(database_down: None) -> None:
    client = Client(raise_request_exception=False)

    response = client.get("/login/")

    assert response.status_code == 503
    page = response.content.decode()
    assert "Briefly unavailable" in page and "nothing was done" in page
    assert response["Retry-After"] == "30"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db(transaction=True)
def test_signed_in_pages_answer_503_not_500_when_the_database_goes_away() -> None:
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(directory_groups=["aws-pb-admin"]))
    assert client.get("/requests/").status_code == 200
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = free_port()
    try:
        for path in ("/", "/requests/", "/approvals/"):
            assert client.get(path).status_code == 503, path
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved
    # Back without a restart.
    assert client.get("/requests/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_api_answers_a_json_503_while_the_database_is_down(database_down: None) -> None:
    response = Client(raise_request_exception=False).get(
        "/api/v1/entitlements", HTTP_AUTHORIZATION="Bearer fedat_0123abcd_" + "x" * 43
    )

    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


def _run(command: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1"}
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command", [["import_mappings", "FILE"], ["rollback_mappings", "1"]], ids=lambda c: c[0]
)
def test_mapping_commands_without_their_database_say_so_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    mapping_file = tmp_path / "mappings.yaml"
    mapping_file.write_text(mapping_yaml(SAMPLE_MAPPINGS))
    argv = [str(mapping_file) if arg == "FILE" else arg for arg in command]

    result = _run(argv, f"postgres://postgres@127.0.0.1:{free_port()}/nowhere")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"CommandError: {command[0]}: lost the database (")
    assert "nothing was applied" in line and "safe to run the same command again" in line


@pytest.mark.django_db(transaction=True)
def test_import_whose_connection_is_killed_says_so_and_applies_nothing(tmp_path: Path) -> None:
    mapping_file = tmp_path / "mappings.yaml"
    mapping_file.write_text(mapping_yaml(SAMPLE_MAPPINGS))
    connection.ensure_connection()
    assert connection.connection is not None
    backend_pid = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])

    try:
        with pytest.raises(CommandError, match="lost the database") as refused:
            call_command("import_mappings", str(mapping_file), stdout=StringIO())
    finally:
        connection.close()

    assert "\n" not in str(refused.value)
    assert MappingVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_while_the_database_hangs() -> None:
    listener = socket.socket()  # accepts connections (the kernel does) and never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    saved = connection.settings_dict["PORT"], connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["HOST"] = "127.0.0.1"
    connection.settings_dict["PORT"] = listener.getsockname()[1]
    answers: list[Any] = []

    def ask() -> None:
        answers.append(Client(raise_request_exception=False).get("/readyz"))

    try:
        probe = threading.Thread(target=ask, daemon=True)
        probe.start()
        probe.join(timeout=30)  # a hang guard; the connect timeout is 5 s
    finally:
        connection.close()
        connection.settings_dict["PORT"], connection.settings_dict["HOST"] = saved
        listener.close()

    assert answers, "/readyz hung on a database that never answers"
    assert answers[0].status_code == 503
    assert answers[0].json()["checks"]["database"] == "unreachable"
