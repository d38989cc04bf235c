"""URL map of SPEC §3.4. Each protocol and workflow keeps its own routes beside its views."""

from django.urls import path

from . import audit_views, views

urlpatterns = [
    path("", views.portal, name="portal"),
    path("login/", views.login_chooser, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("audit/export.jsonl", audit_views.audit_export, name="audit-export"),
]
