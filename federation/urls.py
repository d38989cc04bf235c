"""URL map of SPEC §3.4. Each protocol and workflow keeps its own routes beside its views."""

from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.portal, name="portal"),
    path("login/", views.login_chooser, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
urlpatterns += [path("saml/", include("federation.idp.saml_urls"))]
# The development IdP signs responses for anyone who asks: it exists only in demo mode.
if settings.DEMO_MODE:
    urlpatterns += [path("demo-idp/", include("federation.idp.dev_idp_urls"))]
