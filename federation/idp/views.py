"""SAML endpoints of SPEC §3.4: thin views over ``federation/idp/saml.py``."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from federation.idp import saml
from federation.idp.signin import SignInRefused, complete_sign_in, refusal_response
from federation.models import IdentityProvider


def _idp(slug: str) -> IdentityProvider:
    idp = IdentityProvider.objects.filter(
        slug=slug, protocol=IdentityProvider.Protocol.SAML, enabled=True
    ).first()
    if idp is None:
        raise Http404("no such SAML identity provider")
    return idp


@require_GET
def login(request: HttpRequest, slug: str) -> HttpResponse:
    idp = _idp(slug)
    try:
        return HttpResponseRedirect(saml.start_login(idp, next_path=request.GET.get("next")))
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol="saml")


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# The IdP's cross-site POST carries no CSRF token; the signed, single-use response is the proof.
@csrf_exempt
@require_http_methods(["POST"])
def acs(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        idp = _idp(slug)
        if _content_length(request) > saml.MAX_RESPONSE_CHARS + 8192:
            raise SignInRefused("saml.too_large", "The sign-in response is too large.", status=413)
        try:
            posted = request.POST
        except RequestDataTooBig:
            raise SignInRefused(
                "saml.too_large", "The sign-in response is too large.", status=413
            ) from None
        result = saml.validate_response(
            idp,
            saml_response=posted.get("SAMLResponse"),
            relay_state=posted.get("RelayState"),
        )
        complete_sign_in(request, result.identity, consume=result.consume)
    except saml.IdpInitiatedLogin:
        return HttpResponseRedirect(reverse("saml-login", args=[slug]))
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol="saml")
    except Http404:
        return refusal_response(
            request,
            slug,
            SignInRefused("saml.unknown_idp", "This identity provider is not known.", status=404),
            protocol="saml",
        )
    return HttpResponseRedirect(result.next_path)


@require_GET
def metadata(request: HttpRequest, slug: str) -> HttpResponse:
    idp = _idp(slug)
    try:
        return HttpResponse(saml.sp_metadata(idp), content_type="application/samlmetadata+xml")
    except SignInRefused as refusal:
        return HttpResponse(refusal.message, status=409, content_type="text/plain")


@require_GET
def single_logout_return(request: HttpRequest, slug: str) -> HttpResponse:
    # The local session ended at /logout/ before the browser went to the IdP. Nothing here is
    # acted on: an unauthenticated GET must not be able to end anyone's session.
    return HttpResponseRedirect(reverse("login"))
