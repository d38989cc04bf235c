"""URL map of SPEC §3.4. Each protocol and workflow keeps its own routes beside its views."""

from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path

from federation import audit_views, mapping_views, review_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.portal, name="portal"),
    path("login/", views.login_chooser, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("mappings/", mapping_views.mapping_index, name="mappings"),
    path("mappings/rows/new/", mapping_views.mapping_new, name="mapping-new"),
    path("mappings/rows/<int:pk>/edit/", mapping_views.mapping_edit, name="mapping-edit"),
    path("mappings/accounts/new/", mapping_views.account_new, name="account-new"),
    path(
        "mappings/accounts/<str:account_id>/edit/",
        mapping_views.account_edit,
        name="account-edit",
    ),
    path("mappings/<str:section>/<str:key>/remove/", mapping_views.row_remove, name="row-remove"),
    path("mappings/upload/", mapping_views.mapping_upload, name="mapping-upload"),
    path("mappings/export.yaml", mapping_views.mapping_download, name="mapping-download"),
    path("mappings/drafts/<int:draft_id>/", mapping_views.draft_detail, name="mapping-draft"),
    path(
        "mappings/drafts/<int:draft_id>/<str:action>/",
        mapping_views.draft_decide,
        name="mapping-draft-decide",
    ),
    path("mappings/versions/", mapping_views.version_list, name="mapping-versions"),
    path("mappings/versions/<int:number>/", mapping_views.version_detail, name="mapping-version"),
    path("review/", review_views.access_review, name="access-review"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("audit/export.jsonl", audit_views.audit_export, name="audit-export"),
    path("oidc/", include("federation.idp.oidc_urls")),
    path("", include("federation.issuance_urls")),
    path("", include("access_requests.urls")),
]
urlpatterns += [path("saml/", include("federation.idp.saml_urls"))]
# The development IdP signs responses for anyone who asks: it exists only in demo mode.
if settings.DEMO_MODE:
    urlpatterns += [path("demo-idp/", include("federation.idp.dev_idp_urls"))]
