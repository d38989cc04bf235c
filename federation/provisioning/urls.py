"""Routes of the control loop (SPEC §3.4 /drift/), included from ``federation/urls.py``."""

from django.urls import URLPattern, path

from federation.provisioning import views

urlpatterns: list[URLPattern] = [
    path("drift/", views.drift_report, name="drift"),
    path("drift/plan/<str:account_id>/", views.repair_plan, name="drift-plan"),
]
