"""Issuance in a bounded number of SQL statements (issue 19): ``issue_session`` itself and the
API call ``credential_process`` makes (POST /api/v1/credentials with a token). Counted, never
timed. Inside the test's transaction BEGIN/COMMIT show as SAVEPOINT/RELEASE and are counted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from federation.issuance.service import issue_session
from federation.issuance.tokens import create_api_token, find_api_token, latest_sign_in_of
from federation.models import AuditEvent, SessionIssuance, SignIn
from federation.stepup.rules import latest_sign_in
from tests.aws import MotoServer
from tests.issuance import World

pytestmark = pytest.mark.django_db

# BEGIN, the person's row locked (leaver re-check), the entitlement (mapping version and grants,
# the memo warm), the issuance row with its audit event (one statement), COMMIT. Inline
# sequencing (no broker) adds the sequencer lock, the chain head, the pending events and the
# two UPDATEs that place them.
ISSUE_SESSION = {"batched": 5, "inline": 10}
# The API call adds the token with its person and latest sign-in (one statement, shared by the
# rate limiter and the view): the token's last-used time is written at most every 5 minutes.
API_CREDENTIALS = {"batched": 6, "inline": 11}


def _issue(world: World) -> None:
    issue_session(
        world.alice,
        account_id="111111111111",
        role="cloud-eng",
        kind="cli",
        requested=None,
        now=timezone.now(),
        ip="127.0.0.1",
    )


def _sqls(queries: CaptureQueriesContext) -> str:
    return "\n".join(q["sql"][:160] for q in queries.captured_queries)


@pytest.mark.parametrize("sequencing", ["batched", "inline"])
def test_issue_session_takes_a_fixed_number_of_statements(
    world: World, broker: MotoServer, settings: SettingsWrapper, sequencing: str
) -> None:
    settings.AUDIT_SEQUENCING = sequencing
    _issue(world)  # the catalog and resolution memos warm, as on a running server

    with CaptureQueriesContext(connection) as queries:
        _issue(world)

    assert len(queries) <= ISSUE_SESSION[sequencing], _sqls(queries)
    latest = SessionIssuance.objects.latest("pk")
    event = AuditEvent.objects.get(event_type="issuance.issued", data__issuance_id=latest.pk)
    assert event.target == "111111111111/cloud-eng" and event.actor_user_id == world.alice.pk
    assert (event.seq is not None) is (sequencing == "inline")


@pytest.mark.parametrize("sequencing", ["batched", "inline"])
def test_api_credentials_take_a_fixed_number_of_statements(
    world: World, broker: MotoServer, settings: SettingsWrapper, sequencing: str
) -> None:
    settings.AUDIT_SEQUENCING = sequencing
    settings.RATE_LIMITS_ENABLED = True  # the issuance budget needs the token's person too
    token = create_api_token(
        world.alice, name="cli", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = {"account": "111111111111", "role": "cloud-eng"}
    first = client.post("/api/v1/credentials", body, content_type="application/json")
    assert first.status_code == 200, first.content

    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/credentials", body, content_type="application/json")

    assert response.status_code == 200, response.content
    assert len(queries) <= API_CREDENTIALS[sequencing], _sqls(queries)
    assert sum('"federation_apitoken"' in q["sql"] for q in queries.captured_queries) == 1


def test_the_token_lookup_reads_the_latest_sign_in_as_the_step_up_rule_does(
    world: World,
) -> None:
    token = create_api_token(
        world.alice, name="cli", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    row = find_api_token(token)
    assert row is not None and latest_sign_in_of(row) is None is latest_sign_in(world.alice)
    at = timezone.now()
    older = SignIn.objects.create(user=world.alice, idp=world.idp, at=at, mfa=True)
    newer = SignIn.objects.create(
        user=world.alice, idp=world.idp, at=at, mfa=False, authenticated_at=at
    )
    SignIn.objects.create(user=world.dora, idp=world.idp, at=at + timedelta(1), mfa=True)

    row = find_api_token(token)
    assert row is not None
    found, expected = latest_sign_in_of(row), latest_sign_in(world.alice)
    assert found is not None and expected is not None
    assert (found.pk, found.mfa, found.authenticated_at) == (newer.pk, False, at) != (older.pk,)
    assert found.pk == expected.pk and found.at == expected.at  # other fields load on demand
