"""What the admin page /scim/ shows: each IdP's SCIM status and the leavers processed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q

from federation.models import (
    DirectoryGroup,
    DirectoryUser,
    IdentityDeny,
    IdentityProvider,
    Leaver,
    ScimRequest,
    ScimToken,
)

ERROR_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class IdpStatus:
    idp: IdentityProvider
    tokens: int
    last_request: ScimRequest | None
    users: int
    active_users: int
    groups: int
    errors_last_day: int
    recent_errors: list[ScimRequest]


def directory_status(*, now: datetime) -> dict[str, Any]:
    """Per IdP with a SCIM token or SCIM users: requests, users, groups, errors; and the latest
    leavers with what each lost and whether IAM has confirmed the denies."""
    idps = IdentityProvider.objects.filter(
        Q(scim_tokens__isnull=False) | Q(scim_users__isnull=False)
    ).distinct()
    rows = []
    for idp in idps.order_by("slug"):
        requests = ScimRequest.objects.filter(idp=idp)
        users = DirectoryUser.objects.filter(idp=idp).aggregate(
            total=Count("pk"), active=Count("pk", filter=Q(active=True))
        )
        errors = requests.filter(status__gte=400)
        rows.append(
            IdpStatus(
                idp=idp,
                tokens=ScimToken.objects.filter(idp=idp)
                .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
                .count(),
                last_request=requests.order_by("-at", "-pk").first(),
                users=users["total"],
                active_users=users["active"],
                groups=DirectoryGroup.objects.filter(idp=idp).count(),
                errors_last_day=errors.filter(at__gte=now - ERROR_WINDOW).count(),
                recent_errors=list(errors.order_by("-at", "-pk")[:5]),
            )
        )
    leavers = list(
        Leaver.objects.select_related("user", "idp", "scim_request")
        .annotate(
            deny_count=Count("denies"),
            deny_pending=Count("denies", filter=Q(denies__applied_at__isnull=True)),
            deny_applied=Max("denies__applied_at"),
        )
        .order_by("-at", "-pk")[:50]
    )
    return {
        "idps": rows,
        "leavers": leavers,
        "owed_denies": IdentityDeny.objects.filter(applied_at__isnull=True).count(),
    }
