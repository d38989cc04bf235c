"""URL map as in demo mode: the project's routes plus the demo-only routes (tests only)."""

from tests.federation_stand_in_urls import urlpatterns

__all__ = ["urlpatterns"]
