"""The product's URLs plus the floor of bench/load.py: a bare Django view rendering a template
of the portal page's size. Mounted only by bench/load_settings.py, never in federation/urls.py."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import get_template
from django.urls import URLPattern, URLResolver, include, path


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(get_template("load_floor.html").render({"path": request.path}))


urlpatterns: list[URLPattern | URLResolver] = [
    path("bench-floor/", floor),
    path("", include("federation.urls")),
]
