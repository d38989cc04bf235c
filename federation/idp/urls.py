"""Routes of the SAML service provider (SPEC §3.4), mounted under /saml/."""

from django.urls import path

from federation.idp import saml_views

urlpatterns = [
    path("<slug:slug>/login/", saml_views.login, name="saml-login"),
    path("<slug:slug>/acs/", saml_views.acs, name="saml-acs"),
    path("<slug:slug>/metadata/", saml_views.metadata, name="saml-metadata"),
    path("<slug:slug>/sls/", saml_views.single_logout_return, name="saml-sls"),
]
