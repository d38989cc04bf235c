"""Multi-factor authentication as the IdP asserts it (SPEC §4 Step-up, SECURITY.md §7).

Read from what the protocol adapters already validated: SAML ``AuthnContextClassRef`` or an
authentication-methods attribute (Entra ID), OIDC ``acr`` and ``amr`` (RFC 8176); and the moment
of the authentication (SAML ``AuthnInstant``, OIDC ``auth_time``). A missing, unknown or
malformed value means "no MFA" (or "time unknown"), never a refused sign-in: the step-up rule
(``federation/stepup/rules.py``) then asks for a fresh one. Nothing here decides about access.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from federation.models import IdentityProvider

# AD FS's class when a second factor was used; Entra ID sends the same URI as a value of its
# authentication-methods attribute (below), not as the AuthnContextClassRef.
MS_MULTIPLEAUTHN = "http://schemas.microsoft.com/claims/multipleauthn"
OKTA_2FA_ANY = "urn:okta:loa:2fa:any"
REFEDS_MFA = "https://refeds.org/profile/mfa"
PAPE_MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"

# What counts as MFA when an IdP is registered without its own list (--mfa-authn-contexts).
DEFAULT_SAML_MFA_CONTEXTS = (
    MS_MULTIPLEAUTHN,
    OKTA_2FA_ANY,
    REFEDS_MFA,
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
)
# OIDC: ``amr`` values (RFC 8176 "mfa": more than one factor) and ``acr`` values alike.
DEFAULT_OIDC_MFA_CONTEXTS = ("mfa", OKTA_2FA_ANY, REFEDS_MFA, PAPE_MULTI_FACTOR)

# Entra ID's authentication-methods attribute (SAML) and claim name.
ENTRA_AUTHN_METHODS = "http://schemas.microsoft.com/claims/authnmethodsreferences"

# An authentication time further ahead than the clock drift python3-saml tolerates is not
# believed (it would make an old sign-in look fresh forever).
CLOCK_DRIFT = timedelta(seconds=300)


@dataclass(frozen=True)
class MfaFacts:
    """What one sign-in showed: MFA or not, by which asserted value, and when it happened."""

    mfa: bool
    evidence: tuple[str, ...]  # the asserted values that counted as MFA
    authenticated_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "mfa": self.mfa,
            "evidence": list(self.evidence),
            "authenticated_at": (
                self.authenticated_at.isoformat() if self.authenticated_at else None
            ),
        }


def mfa_contexts(idp: IdentityProvider) -> frozenset[str]:
    """The values that count as MFA for ``idp``: its own list, or its protocol's default."""
    configured = [str(v) for v in (idp.mfa_authn_contexts or []) if str(v).strip()]
    if configured:
        return frozenset(configured)
    if idp.protocol == IdentityProvider.Protocol.OIDC:
        return frozenset(DEFAULT_OIDC_MFA_CONTEXTS)
    return frozenset(DEFAULT_SAML_MFA_CONTEXTS)


def methods_attribute(idp: IdentityProvider) -> str:
    """The SAML attribute listing authentication methods (Entra ID's by default)."""
    return str((idp.config or {}).get("mfa_methods_attribute") or ENTRA_AUTHN_METHODS)


def _strings(values: Any) -> list[str]:
    if isinstance(values, str):
        return [values]
    if isinstance(values, list | tuple):
        return [v for v in values if isinstance(v, str)]
    return []


def _believable(moment: datetime | None, now: datetime) -> datetime | None:
    if moment is None or moment > now + CLOCK_DRIFT:
        return None
    return min(moment, now)


def saml_facts(
    idp: IdentityProvider,
    *,
    class_refs: Sequence[str],
    methods: Iterable[str],
    instants: Sequence[str],
    now: datetime,
) -> MfaFacts:
    """MFA from the AuthnContextClassRefs and the authentication-methods attribute's values;
    the authentication time is the latest AuthnInstant (unreadable ones are ignored)."""
    wanted = mfa_contexts(idp)
    evidence = sorted({v for v in (*_strings(list(class_refs)), *_strings(list(methods)))} & wanted)
    moments = [m for m in (_saml_instant(i) for i in instants) if m is not None]
    return MfaFacts(
        mfa=bool(evidence),
        evidence=tuple(evidence),
        authenticated_at=_believable(max(moments) if moments else None, now),
    )


def _saml_instant(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def oidc_facts(idp: IdentityProvider, claims: Mapping[str, Any], *, now: datetime) -> MfaFacts:
    """MFA from ``amr`` (a list of strings) or ``acr`` (a string); the time from ``auth_time``
    (seconds since the epoch). Values of the wrong type count as absent."""
    wanted = mfa_contexts(idp)
    asserted = set(_strings(claims.get("amr")) if isinstance(claims.get("amr"), list) else [])
    acr = claims.get("acr")
    if isinstance(acr, str):
        asserted.add(acr)
    evidence = sorted(asserted & wanted)
    auth_time = claims.get("auth_time")
    moment: datetime | None = None
    if isinstance(auth_time, int | float) and not isinstance(auth_time, bool):
        try:
            moment = datetime.fromtimestamp(auth_time, tz=UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
    return MfaFacts(
        mfa=bool(evidence), evidence=tuple(evidence), authenticated_at=_believable(moment, now)
    )
