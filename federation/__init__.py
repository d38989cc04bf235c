"""Federation identity-mapping service: project wiring and the core domain."""

from federation.celery import app as celery_app

__all__ = ["celery_app"]
