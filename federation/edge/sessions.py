"""Portal sessions in Redis: ``SESSION_ENGINE`` when ``SESSION_CACHE_URL`` is set.

Django's cache session store costs four Redis round trips per sign-in (EXISTS before every
new key, SET NX, then GET and SET for the final write) and pickles the session into Redis.
This store costs two and keeps what Redis holds readable and unforgeable:

* a new key is claimed with ``SET NX`` alone (the NX is the collision check);
* a write to an existing session is ``SET XX``: it never brings back a session deleted
  meanwhile (logout elsewhere, a leaver's sessions ended), in one atomic step instead of
  Django's GET-then-SET;
* the value is Django's signed session encoding (JSON, HMAC'd with ``SECRET_KEY``), never a
  pickle: whoever can write to Redis can end sessions but cannot mint one;
* the key expires with the session (``EX``), so nothing needs ``clearsessions``.

A Redis that does not answer raises (redis-py's ``RedisError``): the page becomes the 503
"Briefly unavailable" (``federation.unavailable``) instead of silently signing people out.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.utils.crypto import get_random_string

_clients: dict[tuple[str, float], redis.Redis] = {}
_lock = threading.Lock()


def client() -> redis.Redis:
    """The process's Redis client for sessions (a connection pool; thread-safe)."""
    key = (settings.SESSION_CACHE_URL, settings.SESSION_CACHE_TIMEOUT_SECONDS)
    found = _clients.get(key)
    if found is None:
        with _lock:
            found = _clients.get(key)
            if found is None:
                found = redis.Redis.from_url(
                    key[0], socket_timeout=key[1], socket_connect_timeout=key[1]
                )
                _clients[key] = found
    return found


def answers() -> bool:
    """Whether the session store answers (the 503 page's probe)."""
    try:
        return bool(client().ping())
    except redis.RedisError:
        return False


class SessionStore(SessionBase):
    @staticmethod
    def _redis_key(session_key: str) -> str:
        return f"{settings.SESSION_CACHE_PREFIX}:session:{session_key}"

    def load(self) -> dict[str, Any]:
        raw = client().get(self._redis_key(str(self.session_key)))
        if raw is None:
            self._session_key = None
            return {}
        # A value that fails its signature decodes to an empty session (Django logs it).
        return self.decode(raw.decode() if isinstance(raw, bytes) else str(raw))

    def exists(self, session_key: str | None) -> bool:
        return bool(session_key) and bool(client().exists(self._redis_key(str(session_key))))

    def _get_new_session_key(self) -> str:
        # No EXISTS round trip: create()'s SET NX refuses a key in use.
        return get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")

    def create(self) -> None:
        for _ in range(100):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("Unable to create a new session key.")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            self.create()
            return
        value = self.encode(self._get_session(no_load=must_create))  # type: ignore[attr-defined]
        written = client().set(
            self._redis_key(self.session_key),
            value,
            ex=max(1, self.get_expiry_age()),
            nx=must_create,
            xx=not must_create,
        )
        if not written:
            # NX: the key is taken; XX: the session was deleted meanwhile (never resurrect it).
            raise CreateError if must_create else UpdateError

    def delete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        client().delete(self._redis_key(key))

    @classmethod
    def clear_expired(cls) -> None:
        return None  # Redis expires each key with its session
