"""SPEC §2 value types shared by every model: id and slug rules, session bounds, environments
and access kinds."""

from __future__ import annotations

from datetime import timedelta

from django.db import models

ACCOUNT_ID_RE = r"^[0-9]{12}$"
SLUG_RE = r"^[a-z0-9][a-z0-9-]{0,62}$"

# STS bounds for DurationSeconds: 15 minutes to 12 hours.
MIN_SESSION = timedelta(minutes=15)
MAX_SESSION = timedelta(hours=12)

# Sessions never outlive their grant (SECURITY.md §4) and STS issues none under 15 minutes, so a
# grant can start sessions only until 15 minutes before it ends. Issuing the 15-minute minimum
# past the end and denying it in IAM at expiry was the alternative: it needs a deny statement per
# expiring grant on the role's inline policy (10,240 characters for all of them), cuts the
# person's standing sessions on that role too, and IAM takes minutes to apply it. So the shortest
# grant (and the smallest max grant a mapping row may allow) is twice STS's minimum: at least 15
# minutes in which sessions can be started.
MIN_GRANT = 2 * MIN_SESSION
MIN_GRANT_MINUTES = int(MIN_GRANT.total_seconds() // 60)


class Environment(models.TextChoices):
    DEV = "dev", "dev"
    TEST = "test", "test"
    PROD = "prod", "prod"


# Portal, export and plan order: dev before test before prod.
ENV_ORDER = {Environment.DEV.value: 0, Environment.TEST.value: 1, Environment.PROD.value: 2}


class Access(models.TextChoices):
    STANDING = "standing", "standing"
    ELIGIBLE = "eligible", "eligible"
    # Members grant themselves the role at once, with a justification, reviewed afterwards
    # (SPEC §4 Break-glass).
    BREAK_GLASS = "break_glass", "break-glass"


class EntitlementAccess(models.TextChoices):
    """How a person holds an (account, role) right now: through a standing mapping or an active
    grant (both usable), or only eligible (may be requested). ``Access`` is what a mapping row
    says; this is what the resolver concludes."""

    STANDING = "standing", "standing"
    GRANT = "grant", "grant"
    ELIGIBLE = "eligible", "eligible"
    # Only a break-glass row reaches it: usable after an activation (a grant) only.
    BREAK_GLASS = "break_glass", "break-glass"

    @property
    def usable(self) -> bool:
        return self in (EntitlementAccess.STANDING, EntitlementAccess.GRANT)
