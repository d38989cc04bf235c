"""The sign-in front door (SPEC §3.4): the login chooser, logout, and both protocols' endpoints.

Thin views: each reads the clock once, loads the IdP through ``load_idp`` (an unknown or
disabled one is an audited refusal, whatever the protocol), calls one adapter and answers with
``complete_sign_in`` or ``refusal_response``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from federation.idp import oidc, saml, saml_requests, saml_response
from federation.idp.identity import SignInRefused, load_idp, safe_next
from federation.idp.signin import complete_sign_in, refusal_response
from federation.models import IdentityProvider, User

SAML = IdentityProvider.Protocol.SAML
OIDC = IdentityProvider.Protocol.OIDC


@require_GET
def login_chooser(request: HttpRequest) -> HttpResponse:
    idps = IdentityProvider.objects.filter(enabled=True).order_by("slug")
    return render(request, "federation/login.html", {"idps": idps})


@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "federation/logout.html")
    user = request.user
    # SAML single logout, where the IdP offers it: a link, not a redirect, because the CSP's
    # form-action 'self' would block a form POST that redirects to the IdP.
    idp_logout_url = saml.logout_url(user) if isinstance(user, User) else ""
    logout(request)  # flushes the session
    if idp_logout_url:
        return render(request, "federation/saml_logged_out.html", {"url": idp_logout_url})
    messages.success(request, "You are signed out of the portal.")
    return redirect("idp:login")


# --------------------------------------------------------------------------- SAML


@require_GET
def saml_login(request: HttpRequest, slug: str) -> HttpResponse:
    now = timezone.now()
    try:
        idp = load_idp(slug, SAML)
        started = saml.start_login(
            idp,
            next_path=safe_next(request.GET.get("next")),
            now=now,
            step_up=request.GET.get("step_up") == "1",
        )
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol=SAML, now=now)
    response = HttpResponseRedirect(started.redirect_url)
    cookie = saml.browser_cookie(idp)
    response.set_cookie(
        cookie.name,
        started.browser_secret,
        max_age=cookie.max_age,
        path=cookie.path,
        secure=cookie.secure,
        httponly=True,
        samesite=cookie.samesite,
    )
    return response


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# The IdP's cross-site POST carries no CSRF token; the signed, single-use response is the proof.
@csrf_exempt
@require_http_methods(["POST"])
def saml_acs(request: HttpRequest, slug: str) -> HttpResponse:
    now = timezone.now()
    too_large = SignInRefused(
        "The sign-in response is too large.", code="saml.too_large", status=413
    )
    try:
        if _content_length(request) > saml_response.MAX_RESPONSE_CHARS + 8192:
            raise too_large
        try:
            posted = request.POST
        except RequestDataTooBig:
            raise too_large from None
        # The login it answers and its IdP in one read; an unknown IdP is refused as such.
        pending = saml_requests.pending_login(slug, posted.get("RelayState"))
        idp = pending.idp if pending is not None else load_idp(slug, SAML)
        cookie = saml.browser_cookie(idp)
        result = saml_response.validate_response(
            idp,
            saml_response=posted.get("SAMLResponse"),
            relay_state=posted.get("RelayState"),
            browser_secret=request.COOKIES.get(cookie.name),
            now=now,
            pending=pending,
        )
        complete_sign_in(request, result.identity, now=now, claims=result.claims)
    except saml_response.IdpInitiatedLogin:
        return HttpResponseRedirect(reverse("idp:saml-login", args=[slug]))
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol=SAML, now=now)
    response = HttpResponseRedirect(result.next_path)
    response.delete_cookie(cookie.name, path=cookie.path, samesite=cookie.samesite)
    return response


@require_GET
def saml_metadata(request: HttpRequest, slug: str) -> HttpResponse:
    now = timezone.now()
    try:
        idp = load_idp(slug, SAML)
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol=SAML, now=now)
    try:
        return HttpResponse(saml.sp_metadata(idp), content_type="application/samlmetadata+xml")
    except SignInRefused as refusal:
        return HttpResponse(refusal.message, status=409, content_type="text/plain")


@require_GET
def saml_single_logout_return(request: HttpRequest, slug: str) -> HttpResponse:
    # The local session ended at /logout/ before the browser went to the IdP. Nothing here is
    # acted on: an unauthenticated GET must not be able to end anyone's session.
    return HttpResponseRedirect(reverse("idp:login"))


# --------------------------------------------------------------------------- OpenID Connect


@never_cache
@require_GET
def oidc_login(request: HttpRequest, slug: str) -> HttpResponse:
    now = timezone.now()
    try:
        idp = load_idp(slug, OIDC)
        url = oidc.begin_sign_in(
            request,
            idp,
            next_url=safe_next(request.GET.get("next")),
            now=now,
            step_up=request.GET.get("step_up") == "1",
        )
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol=OIDC, now=now)
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def oidc_callback(request: HttpRequest, slug: str) -> HttpResponse:
    now = timezone.now()
    try:
        idp = load_idp(slug, OIDC)
        result = oidc.finish_sign_in(request, idp, now=now)
        complete_sign_in(request, result.identity, now=now)
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol=OIDC, now=now)
    return HttpResponseRedirect(result.next_url)
