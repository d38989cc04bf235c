"""URL map as in demo mode: the project's routes plus the development IdP (tests only)."""

from django.urls import URLPattern, URLResolver, include, path

from federation.urls import urlpatterns as project_urlpatterns

urlpatterns: list[URLPattern | URLResolver] = [
    *project_urlpatterns,
    path("demo-idp/", include("federation.idp.dev_idp_urls")),
]
