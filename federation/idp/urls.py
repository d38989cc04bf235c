"""Routes of the sign-in front door (SPEC §3.4), one namespace ``idp`` for both protocols."""

from django.urls import path

from federation.idp import views

app_name = "idp"

urlpatterns = [
    path("login/", views.login_chooser, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("saml/<slug:slug>/login/", views.saml_login, name="saml-login"),
    path("saml/<slug:slug>/acs/", views.saml_acs, name="saml-acs"),
    path("saml/<slug:slug>/metadata/", views.saml_metadata, name="saml-metadata"),
    path("saml/<slug:slug>/sls/", views.saml_single_logout_return, name="saml-sls"),
    path("oidc/<slug:slug>/login/", views.oidc_login, name="oidc-login"),
    path("oidc/<slug:slug>/callback/", views.oidc_callback, name="oidc-callback"),
]
