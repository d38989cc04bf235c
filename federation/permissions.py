"""Who may administer the tables and read the audit log: directory groups from settings only."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from federation.audit.chain import record_refusal, request_ip
from federation.models import User
from federation.refusals import Refused, refusal_page


def _member(user: Any, groups: list[str]) -> bool:
    return (
        isinstance(user, User)
        and user.is_authenticated
        and bool(set(user.directory_groups) & set(groups))
    )


def is_admin(user: Any) -> bool:
    return _member(user, settings.ADMIN_GROUPS)


def is_auditor(user: Any) -> bool:
    return _member(user, settings.AUDITOR_GROUPS)


def can_read_audit(user: Any) -> bool:
    return is_auditor(user) or is_admin(user)


View = Callable[..., HttpResponseBase]


class Forbidden(Refused):
    """A signed-in person reached a page their directory groups do not open."""

    code = "forbidden"
    status = 403
    title = "Not allowed"


def require(check: Callable[[Any], bool], what: str) -> Callable[[View], View]:
    """Sign-in first, then ``check``; a refusal is a 403 page and an audit event."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not check(request.user):
                refusal = Forbidden(
                    f"This page is for {what} only. Membership comes from your directory "
                    "groups; ask your administrator if you need it."
                )
                record_refusal(
                    "access.denied",
                    refusal,
                    actor=request.user if isinstance(request.user, User) else None,
                    target=request.path[:500],
                    ip=request_ip(request),
                    data={"needs": what, "method": request.method},
                    now=timezone.now(),
                )
                return refusal_page(request, refusal)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def roles_context(request: HttpRequest) -> dict[str, bool]:
    """Template context: which sections the signed-in person may see in the navigation."""
    user = getattr(request, "user", None)
    return {"nav_is_admin": is_admin(user), "nav_reads_audit": can_read_audit(user)}
