"""URL map of SPEC §3.4: each concern keeps its routes beside its views; this file mounts them."""

from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path

from federation import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("", include("federation.observability.urls")),
    path("", include("federation.idp.urls")),
    path("", include("federation.entitlements.urls")),
    path("", include("federation.mappings.urls")),
    path("", include("federation.audit.urls")),
    # Before issuance: its urls end with the API's catch-all 404.
    path("", include("federation.device.urls")),
    path("", include("federation.issuance.urls")),
    path("", include("federation.stepup.urls")),
    path("", include("access_requests.urls")),
    path("", include("federation.provisioning.urls")),
    path("", include("federation.directory.urls")),
]
# The development IdP signs responses for anyone who asks: it exists only in demo mode.
if settings.DEMO_MODE:
    urlpatterns += [path("", include("federation.demo.urls"))]
