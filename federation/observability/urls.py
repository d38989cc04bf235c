"""Route of the metrics endpoint (included by federation/urls.py)."""

from django.urls import URLPattern, path

from federation.observability import views

urlpatterns: list[URLPattern] = [
    path("metrics", views.metrics, name="metrics"),
]
