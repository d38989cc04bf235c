"""Routes of the portal and the access review, included from ``federation/urls.py``."""

from django.urls import URLPattern, path

from federation.entitlements import views

urlpatterns: list[URLPattern] = [
    path("", views.portal, name="portal"),
    path("review/", views.access_review, name="access-review"),
    path("review/unused/<int:mapping_id>/draft/", views.draft_removal, name="unused-draft-removal"),
]
