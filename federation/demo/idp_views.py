"""The development IdP's pages (demo mode only): pick a demo user, post a signed response."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from federation.demo import demo_only
from federation.demo import idp as dev_idp
from federation.idp.saml import acs_url
from federation.models import User


@demo_only
@require_http_methods(["GET", "POST"])
def sso(request: HttpRequest) -> HttpResponse:
    source = request.GET if request.method == "GET" else request.POST
    saml_request = source.get("SAMLRequest", "")
    relay_state = source.get("RelayState", "")
    try:
        authn = dev_idp.read_authn_request(saml_request)
        if request.method == "GET":
            return render(
                request,
                "federation/demo_idp_login.html",
                {
                    "users": dev_idp.list_demo_users(),
                    "saml_request": saml_request,
                    "relay_state": relay_state,
                    "step_up": authn.force_authn,
                },
            )
        user_id = source.get("user", "")
        user = (
            User.objects.filter(pk=int(user_id), idp__slug=dev_idp.DEMO_IDP_SLUG).first()
            if user_id.isdigit()
            else None
        )
        if user is None:
            raise dev_idp.DemoRequestRefused("pick one of the demo users")
        saml_response = dev_idp.sign_response(user, authn, now=timezone.now())
    except dev_idp.DemoRequestRefused as refusal:
        return render(
            request,
            "federation/demo_idp_login.html",
            {"error": refusal.message},
            status=refusal.status,
        )
    return render(
        request,
        "federation/demo_idp_post.html",
        {
            "acs_url": acs_url(dev_idp.demo_idp()),
            "saml_response": saml_response,
            "relay_state": relay_state,
            "user": user,
        },
    )
