"""The development IdP's pages (demo mode only): pick a demo user, post a signed response."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from federation.idp import dev_idp
from federation.idp.saml import acs_url
from federation.models import User


@require_http_methods(["GET", "POST"])
def sso(request: HttpRequest) -> HttpResponse:
    if not settings.DEMO_MODE:
        raise Http404("the development IdP exists only in demo mode")
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
        saml_response = dev_idp.sign_response(user, authn)
    except dev_idp.DemoRequestRefused as refusal:
        return render(
            request, "federation/demo_idp_login.html", {"error": str(refusal)}, status=400
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
