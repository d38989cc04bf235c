"""URL map of SPEC §3.4. Each protocol and workflow keeps its own routes beside its views."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.portal, name="portal"),
    path("login/", views.login_chooser, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("", include("federation.issuance_urls")),
]
