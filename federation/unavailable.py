"""A 503 page while the database (or the Redis that holds sessions) is down (issue #17),
instead of a bare 500.

Outside every middleware that reads the session or the user (both live in the database), so
it also catches their failures; the page is rendered without the request's context and carries
the security headers itself, since the headers middleware sits inside it. A view's
database error becomes the page at once; a 500 from an inner middleware (the session is read
before any view runs) becomes it when a probe of the database fails too. API paths get the JSON
refusal shape. ``Retry-After`` tells clients and proxies to come back shortly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.cache import caches
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from federation.middleware import content_security_policy

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
CODE = "service_unavailable"
MESSAGE = (
    "The service is briefly unavailable (its database or session store does not answer); "
    "try again shortly."
)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": CODE, "message": MESSAGE}, status=503)
    else:
        response = HttpResponse(render_to_string("federation/unavailable.html"), status=503)
    response["Content-Security-Policy"] = content_security_policy(
        settings.BASE_URL, settings.AWS_FEDERATION_URL
    )
    response["X-Frame-Options"] = "DENY"
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def database_answers() -> bool:
    try:
        # A connection left broken by the failure is dropped first, so this probe tests the
        # server, not a dead socket.
        connection.close_if_unusable_or_obsolete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except (OperationalError, InterfaceError):
        return False


def session_store_answers() -> bool:
    """Whether the session store answers: always, for sessions in PostgreSQL (the database
    probe covers them); a round trip to Redis when sessions live there (SESSION_CACHE_URL)."""
    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.cache":
        return True
    try:
        caches[settings.SESSION_CACHE_ALIAS].get("fedaccess-probe")
        return True
    except Exception:  # redis-py's errors; any failure to answer is the same answer
        return False


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 500:
            if not database_answers():
                logger.error("database unreachable: answered %s with 503", request.path)
                return unavailable_response(request)
            if not session_store_answers():
                logger.error("session store unreachable: answered %s with 503", request.path)
                return unavailable_response(request)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.error("database unreachable: answered %s with 503: %s", request.path, exception)
            return unavailable_response(request)
        return None
