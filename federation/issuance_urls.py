"""Routes for issuing sessions, API tokens, the JSON API and (demo only) the federation
stand-in. Included from ``federation/urls.py``."""

from django.conf import settings
from django.urls import URLPattern, path

from federation import api, demo_federation, issuance_views

urlpatterns: list[URLPattern] = [
    path("sessions/", issuance_views.issue, name="issue-session"),
    path("tokens/", issuance_views.api_tokens, name="api-tokens"),
    path("tokens/<int:token_id>/revoke/", issuance_views.revoke_token, name="revoke-api-token"),
    path("api/v1/entitlements", api.entitlements, name="api-entitlements"),
    path("api/v1/credentials", api.credentials, name="api-credentials"),
    path("api/v1/openapi.json", api.openapi, name="api-openapi"),
]

if settings.DEMO_MODE:
    urlpatterns.append(path("demo-federation/", demo_federation.federation, name="demo-federation"))
