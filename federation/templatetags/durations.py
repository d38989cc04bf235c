"""``{{ value|duration }}``: a timedelta as people say it (``4 h``, ``1 h 30 min``, ``45 min``),
never Python's ``4:00:00``."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    minutes = max(0, int(value.total_seconds() // 60))
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"


@register.filter
def minutes(value: timedelta) -> int:
    """A timedelta as whole minutes, for form values."""
    return int(value.total_seconds() // 60)
