"""Routes of the control loop (SPEC §3.4 /drift/), included from ``federation/urls.py``."""

from django.urls import URLPattern, path

from federation.provisioning import views

urlpatterns: list[URLPattern] = [
    path("drift/", views.drift_report, name="drift"),
    path("drift/plan/<str:account_id>/", views.repair_plan, name="drift-plan"),
    path("drift/apply/", views.apply_roles, name="roles-apply"),
    path("drift/rollouts/<int:rollout_id>/", views.rollout_detail, name="rollout"),
    path(
        "drift/rollouts/<int:rollout_id>/<slug:action>/",
        views.rollout_decide,
        name="rollout-decide",
    ),
]
