"""Portal sessions in Redis (``SESSION_CACHE_URL``, the production setting): a sign-in writes
its session there and no session row; a leaver's session is deleted there; Redis down means
a 503 page and a sign-in that left nothing behind, never a 500."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from django.contrib.sessions.backends.cache import KEY_PREFIX
from django.contrib.sessions.models import Session
from django.core.cache import BaseCache, caches
from django.db import transaction
from django.test import Client
from django.utils import timezone

from federation.directory.leavers import process_leaver
from federation.models import AuditEvent, LeaverKind, PortalSession, SamlAuthnRequest, SignIn, User
from tests.saml_idp import SamlFlow, make_flow

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = os.environ.get("TEST_SESSION_CACHE_URL", "redis://127.0.0.1:6379/8")


def _sessions_in(settings, location: str) -> BaseCache:  # type: ignore[no-untyped-def]
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            # Keys of this test only: parallel runs share the Redis database.
            "KEY_PREFIX": f"test-sessions-{secrets.token_hex(6)}",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        },
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    settings.SESSION_CACHE_ALIAS = "sessions"
    return caches["sessions"]


@pytest.fixture
def flow(tmp_path: Path, client: Client) -> SamlFlow:
    return make_flow("corp", tmp_path, client)


def test_a_sign_in_keeps_its_session_in_redis_and_a_leaver_loses_it(
    settings,  # type: ignore[no-untyped-def]
    flow: SamlFlow,
    client: Client,
) -> None:
    store = _sessions_in(settings, REDIS_URL)

    assert flow.sign_in().status_code == 302
    assert client.get("/").status_code == 200  # the portal, signed in

    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert store.get(KEY_PREFIX + key) is not None
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
    assert store.get(KEY_PREFIX + key) is None
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
