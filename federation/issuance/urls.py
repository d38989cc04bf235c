"""Routes for issuing sessions, API tokens and the JSON API (included by federation/urls.py)."""

from django.urls import URLPattern, path, re_path

from access_requests import api as requests_api
from federation.issuance import api, views

urlpatterns: list[URLPattern] = [
    path("sessions/", views.issue, name="issue-session"),
    path("tokens/", views.api_tokens, name="api-tokens"),
    path("tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke-api-token"),
    path("api/v1/entitlements", api.entitlements, name="api-entitlements"),
    path("api/v1/credentials", api.credentials, name="api-credentials"),
    path("api/v1/console", api.console, name="api-console"),
    path("api/v1/requests", requests_api.requests_collection, name="api-requests"),
    path("api/v1/requests/<int:request_id>", requests_api.show_request, name="api-show-request"),
    path("api/v1/break-glass", requests_api.break_glass, name="api-break-glass"),
    path(
        "api/v1/requests/<int:request_id>/cancel",
        requests_api.cancel_request,
        name="api-cancel-request",
    ),
    path("api/v1/approvals", requests_api.list_approvals, name="api-approvals"),
    path(
        "api/v1/approvals/<int:request_id>/decision",
        requests_api.decide,
        name="api-decide-request",
    ),
    path("api/v1/token/revoke", api.revoke_this_token, name="api-revoke-this-token"),
    path("api/v1/openapi.json", api.openapi, name="api-openapi"),
    # Last: any other path under the API answers a JSON 404 (an HTML page is no API answer).
    re_path(r"^api/(?P<rest>.*)$", api.not_found, name="api-not-found"),
]
