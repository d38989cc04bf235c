"""Routes of the development IdP; federation/urls.py mounts them only when DEMO_MODE is on."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import path

from federation.idp import dev_idp_views

if not settings.DEMO_MODE:
    raise ImproperlyConfigured("the development IdP may only be mounted in demo mode (DEMO_MODE=1)")

urlpatterns = [
    path("sso/", dev_idp_views.sso, name="demo-idp-sso"),
]
