"""Routes of OpenID Connect sign-in, included under /oidc/ by federation/urls.py."""

from django.urls import path

from federation.idp import oidc_views

app_name = "oidc"

urlpatterns = [
    path("<slug:slug>/login/", oidc_views.login, name="login"),
    path("<slug:slug>/callback/", oidc_views.callback, name="callback"),
]
