"""Routes that exist only in demo mode: the development IdP and the console federation stand-in.

``federation/urls.py`` mounts this module only when ``DEMO_MODE`` is on; each view also refuses
with a 404 when demo mode is off (``demo_only``), so a test or a settings change cannot expose it.
"""

from django.urls import path

from federation.demo import federation, idp_views

urlpatterns = [
    path("demo-idp/sso/", idp_views.sso, name="demo-idp-sso"),
    path("demo-federation/", federation.federation, name="demo-federation"),
]
