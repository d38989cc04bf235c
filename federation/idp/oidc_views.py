"""OpenID Connect sign-in endpoints (SPEC §3.4): /oidc/<slug>/login/ and /oidc/<slug>/callback/.

Validation lives in ``federation/idp/oidc.py``; completion and refusal in
``federation/idp/signin.py``.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from federation.idp import oidc
from federation.idp.signin import SignInRefused, complete_sign_in, refusal_response


@never_cache
@require_GET
def login(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        idp = oidc.get_oidc_idp(slug)
        next_url = oidc.safe_next_url(request, request.GET.get("next"))
        url = oidc.begin_sign_in(request, idp, next_url=next_url)
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol="oidc")
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def callback(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        idp = oidc.get_oidc_idp(slug)
        result = oidc.finish_sign_in(request, idp)
    except SignInRefused as refusal:
        return refusal_response(request, slug, refusal, protocol="oidc")
    complete_sign_in(request, result.identity)
    return HttpResponseRedirect(result.next_url)
