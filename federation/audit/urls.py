"""Routes of the audit log (SPEC §3.4 /audit/), included from ``federation/urls.py``."""

from django.urls import URLPattern, path

from federation.audit import views

urlpatterns: list[URLPattern] = [
    path("audit/", views.audit_log, name="audit"),
    path("audit/export.jsonl", views.audit_export, name="audit-export"),
]
