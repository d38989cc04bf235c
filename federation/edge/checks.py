"""``manage.py check --deploy``: rate limits counted in process memory are no shared limit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def rate_limits_are_shared(**_kwargs: Any) -> list[CheckMessage]:
    if not settings.RATE_LIMITS_ENABLED or settings.RATE_LIMIT_CACHE_URL:
        return []
    return [
        Warning(
            "Rate limits are counted in each process's memory, so every worker and instance "
            "grants the whole budget again.",
            hint="Set RATE_LIMIT_CACHE_URL=redis://host:port/db (docs/production.md), or "
            "RATE_LIMITS_ENABLED=0 to say the limits are enforced elsewhere.",
            id="fedaccess.W001",
        )
    ]
