"""Everything that exists only with DEMO_MODE: the development IdP, the federation stand-in and
the demo tables. ``federation/urls.py`` mounts ``federation.demo.urls`` only in demo mode."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse


def demo_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 404 unless demo mode is on: the one guard every demo view wears."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not settings.DEMO_MODE:
            raise Http404("this page exists only in demo mode")
        return view(request, *args, **kwargs)

    return wrapper
