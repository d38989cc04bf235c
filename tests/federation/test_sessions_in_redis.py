"""Portal sessions in Redis (``SESSION_CACHE_URL``, the production setting): a sign-in writes
its session there and no session row; a leaver's session is deleted there; Redis down means
a 503 page and a sign-in that left nothing behind, never a 500."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client
from django.utils import timezone
from redis import Redis

from federation.directory.leavers import process_leaver
from federation.edge import sessions
from federation.models import AuditEvent, LeaverKind, PortalSession, SamlAuthnRequest, SignIn, User
from tests.saml_idp import SamlFlow, make_flow

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = os.environ.get("TEST_SESSION_CACHE_URL", "redis://127.0.0.1:6379/8")


def _sessions_in(settings, location: str) -> Redis:  # type: ignore[no-untyped-def]
    settings.SESSION_CACHE_URL = location
    # Keys of this test only: parallel runs share the Redis database.
    settings.SESSION_CACHE_PREFIX = f"test-sessions-{secrets.token_hex(6)}"
    settings.SESSION_ENGINE = "federation.edge.sessions"
    return sessions.client()


def _stored(settings, key: str) -> bytes | None:  # type: ignore[no-untyped-def]
    value = sessions.client().get(f"{settings.SESSION_CACHE_PREFIX}:session:{key}")
    return value if isinstance(value, bytes) else None


@pytest.fixture
def flow(tmp_path: Path, client: Client) -> SamlFlow:
    return make_flow("corp", tmp_path, client)


@pytest.fixture
def signed_in(settings, flow: SamlFlow, client: Client) -> str:  # type: ignore[no-untyped-def]
    """A SAML sign-in with sessions in Redis; the browser's session key."""
    _sessions_in(settings, REDIS_URL)
    assert flow.sign_in().status_code == 302
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def test_a_sign_in_keeps_its_session_in_redis_and_a_leaver_loses_it(
    settings,  # type: ignore[no-untyped-def]
    flow: SamlFlow,
    client: Client,
    signed_in: str,
) -> None:
    assert client.get("/").status_code == 200  # the portal, signed in

    key = signed_in
    stored = _stored(settings, key)
    # Django's signed JSON, not a pickle: Redis holds nothing that runs when read.
    assert stored is not None and not stored.startswith(b"\x80")
    assert user_signed_in_by(stored.decode()) == str(User.objects.get().pk)
    assert not Session.objects.exists()  # no session row in PostgreSQL
    user = User.objects.get()
    assert PortalSession.objects.get(user=user).session_key == key

    with transaction.atomic():
        user.is_active = False
        user.save(update_fields=["is_active"])
        leaver = process_leaver(
            user, idp=flow.idp, kind=LeaverKind.DEACTIVATED, scim_request=None, now=timezone.now()
        )

    assert leaver.sessions_ended == 1
    assert _stored(settings, key) is None
    answer = client.get("/")
    assert answer.status_code == 302 and "/login/" in answer["Location"]


def test_redis_down_answers_503_and_the_sign_in_leaves_nothing_behind(
    settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # What a browser sees: the page, not the exception the test client would re-raise.
    flow = make_flow("corp", tmp_path, Client(raise_request_exception=False))
    _sessions_in(settings, "redis://127.0.0.1:1/0")  # nothing listens on port 1

    answer = flow.sign_in()

    assert answer.status_code == 503
    assert "Briefly unavailable" in answer.content.decode()
    # The sign-in's transaction held the session's creation: nothing of it stays.
    assert not SignIn.objects.exists()
    assert not PortalSession.objects.exists()
    assert not AuditEvent.objects.filter(event_type="signin.success").exists()
    assert SamlAuthnRequest.objects.get().consumed_at is None


def user_signed_in_by(value: str) -> str:
    return str(sessions.SessionStore().decode(value).get(SESSION_KEY))


def test_a_forged_or_deleted_session_signs_nobody_in(
    settings,  # type: ignore[no-untyped-def]
    client: Client,
    signed_in: str,
) -> None:
    key = signed_in
    redis_key = f"{settings.SESSION_CACHE_PREFIX}:session:{key}"
    user = User.objects.get()

    # Someone who can write to Redis but has no SECRET_KEY writes a session for the user.
    sessions.client().set(redis_key, f'{{"_auth_user_id": "{user.pk}"}}', ex=60)
    answer = client.get("/")
    assert answer.status_code == 302 and "/login/" in answer["Location"]

    # A write to a session deleted meanwhile (logout in another tab) does not bring it back.
    store = sessions.SessionStore(session_key=key)
    store["note"] = "x"
    sessions.client().delete(redis_key)
    with pytest.raises(UpdateError):
        store.save()
    assert sessions.client().get(redis_key) is None
