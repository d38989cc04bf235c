"""Routes of the request workflow (SPEC §3.4), included from federation/urls.py."""

from django.urls import path

from access_requests import break_glass_views, views

urlpatterns = [
    path("requests/", views.my_requests, name="requests"),
    path("requests/<int:request_id>/cancel/", views.cancel, name="request-cancel"),
    path("requests/grants/<int:grant_id>/end/", views.end_grant, name="grant-end"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<int:request_id>/decide/", views.decide, name="request-decide"),
    path("approvals/grants/<int:grant_id>/revoke/", views.revoke, name="grant-revoke"),
    path("break-glass/", break_glass_views.activate, name="break-glass-activate"),
    path(
        "approvals/break-glass/<int:request_id>/review/",
        break_glass_views.review,
        name="break-glass-review",
    ),
]
