"""The access_requests app: requests, approvals and the grants they make."""

from __future__ import annotations

from django.apps import AppConfig


class AccessRequestsConfig(AppConfig):
    name = "access_requests"

    def ready(self) -> None:
        # Celery autodiscovers tasks.py only; the beat tasks live in sweeps.py and every worker
        # must know them by name. Imported here, once the models are loaded.
        from access_requests import sweeps  # noqa: F401
