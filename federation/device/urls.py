"""Routes of the CLI's browser login; mounted before the API's catch-all JSON 404."""

from django.urls import URLPattern, path

from federation.device import views

urlpatterns: list[URLPattern] = [
    path("device/", views.confirm, name="device-confirm"),
    path("api/v1/device/start", views.start, name="api-device-start"),
    path("api/v1/device/token", views.token, name="api-device-token"),
]
