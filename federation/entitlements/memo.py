"""One resolution of the signed-in person's entitlements per request.

The portal page and the navigation (a template context processor rendering the same page) both
need them; the second asks for the first's answer instead of resolving again. The answer lives
on the request object only, so it never outlives the request or reaches another person's.
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest

from federation.entitlements.resolve import Entitlement, resolve_entitlements
from federation.models import User

_ATTRIBUTE = "_fedaccess_entitlements"


def request_entitlements(request: HttpRequest, user: User, *, now: datetime) -> list[Entitlement]:
    """``resolve_entitlements`` for ``user``, resolved at most once during ``request``."""
    memo = getattr(request, _ATTRIBUTE, None)
    if memo is not None and memo[0] == user.pk:
        return list(memo[1])
    entitlements = resolve_entitlements(user.directory_groups, now=now, user_id=user.pk)
    setattr(request, _ATTRIBUTE, (user.pk, tuple(entitlements)))
    return entitlements
