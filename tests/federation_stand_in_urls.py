"""The project's URLs plus the demo-only routes (as in demo mode), for tests only."""

from django.urls import URLPattern, URLResolver, include, path

from federation.urls import urlpatterns as project_urlpatterns

urlpatterns: list[URLPattern | URLResolver] = [
    *project_urlpatterns,
    path("", include("federation.demo.urls")),
]
