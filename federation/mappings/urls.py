"""Routes of the mapping editor (SPEC §3.4 /mappings/), included from ``federation/urls.py``."""

from django.urls import URLPattern, path

from federation.mappings import views

urlpatterns: list[URLPattern] = [
    path("mappings/", views.mapping_index, name="mappings"),
    path("mappings/rows/new/", views.mapping_new, name="mapping-new"),
    path("mappings/rows/<int:pk>/edit/", views.mapping_edit, name="mapping-edit"),
    path("mappings/accounts/new/", views.account_new, name="account-new"),
    path("mappings/accounts/<str:account_id>/edit/", views.account_edit, name="account-edit"),
    path("mappings/<str:section>/<str:key>/remove/", views.row_remove, name="row-remove"),
    path("mappings/upload/", views.mapping_upload, name="mapping-upload"),
    path("mappings/export.yaml", views.mapping_download, name="mapping-download"),
    path("mappings/drafts/<int:draft_id>/", views.draft_detail, name="mapping-draft"),
    path(
        "mappings/drafts/<int:draft_id>/<str:action>/",
        views.draft_decide,
        name="mapping-draft-decide",
    ),
    path("mappings/versions/", views.version_list, name="mapping-versions"),
    path("mappings/versions/compare/", views.version_compare, name="mapping-compare"),
    path("mappings/versions/<int:number>/", views.version_detail, name="mapping-version"),
]
