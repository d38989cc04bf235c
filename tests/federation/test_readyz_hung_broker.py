"""/readyz against a hung broker (issue #17): it answers 503 within its own timeout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.http import HttpResponse
from django.test import Client


@pytest.fixture
def hung_broker_url() -> Iterator[str]:
    """A port whose kernel completes the TCP handshake and that never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_while_the_broker_hangs(
    client: Client, settings: Any, hung_broker_url: str
) -> None:
    settings.CELERY_BROKER_URL = hung_broker_url
    answers: list[HttpResponse] = []

    def ask() -> None:
        try:
            answers.append(client.get("/readyz"))
        finally:
            connections.close_all()  # this thread's own database connection

    probe = threading.Thread(target=ask, daemon=True)

    probe.start()
    # A hang guard, far above the probe's own bound (a load balancer gives up long before).
    probe.join(timeout=20)

    assert answers, "/readyz hung on a broker that never answers"
    (response,) = answers
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "unreachable"
