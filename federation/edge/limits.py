"""Which rate limits apply to which route, and what each counts by (issue 18 item 5).

Each limit is a budget of calls per window (``"30/m"``, ``"20/10m"``: django-ratelimit's rate
syntax) for one key: the client's address (as TRUSTED_PROXY_COUNT lets us see it), an API token,
or a person. Rates come from settings (``RATE_LIMITS``, one ``RATE_LIMIT_<NAME>`` variable each;
``off`` disables one). Routes are named by their URL names, so a moved path keeps its limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from federation.audit.chain import request_ip
from federation.issuance.tokens import TOKEN_PREFIX, digest_of, find_api_token
from federation.models import User


class LimitName(StrEnum):
    """Every limit; the value is the settings key and, upper-cased, the RATE_LIMIT_ suffix."""

    SIGNIN = "signin"
    SAML_ACS = "saml_acs"
    OIDC_CALLBACK = "oidc_callback"
    API_TOKEN = "api_token"  # noqa: S105 - a limit's name, not a secret
    API_ADDRESS = "api_address"
    ISSUANCE = "issuance"
    REQUESTS = "requests"


class KeyKind(StrEnum):
    ADDRESS = "address"
    TOKEN = "token"  # noqa: S105 - what a limit counts by, not a secret
    PERSON = "person"


KEY_OF: dict[LimitName, KeyKind] = {
    LimitName.SIGNIN: KeyKind.ADDRESS,
    LimitName.SAML_ACS: KeyKind.ADDRESS,
    LimitName.OIDC_CALLBACK: KeyKind.ADDRESS,
    LimitName.API_ADDRESS: KeyKind.ADDRESS,
    LimitName.API_TOKEN: KeyKind.TOKEN,
    LimitName.ISSUANCE: KeyKind.PERSON,
    LimitName.REQUESTS: KeyKind.PERSON,
}

# What a person is told was too frequent.
WHAT: dict[LimitName, str] = {
    LimitName.SIGNIN: "sign-in attempts",
    LimitName.SAML_ACS: "SAML responses",
    LimitName.OIDC_CALLBACK: "OpenID Connect callbacks",
    LimitName.API_ADDRESS: "API calls",
    LimitName.API_TOKEN: "API calls",
    LimitName.ISSUANCE: "session issuances",
    LimitName.REQUESTS: "access requests",
}

# URL name -> (the limits it spends, the methods that spend them; None: every method).
_ROUTES: dict[str, tuple[tuple[LimitName, ...], frozenset[str] | None]] = {
    "idp:saml-login": ((LimitName.SIGNIN,), None),
    "idp:oidc-login": ((LimitName.SIGNIN,), None),
    "idp:saml-acs": ((LimitName.SAML_ACS,), None),
    "idp:oidc-callback": ((LimitName.OIDC_CALLBACK,), None),
    "issue-session": ((LimitName.ISSUANCE,), frozenset({"POST"})),
    "api-credentials": ((LimitName.ISSUANCE,), frozenset({"POST"})),
    "api-console": ((LimitName.ISSUANCE,), frozenset({"POST"})),
    "requests": ((LimitName.REQUESTS,), frozenset({"POST"})),
    # GET on the same path lists my requests: only filing (POST) spends the budget.
    "api-requests": ((LimitName.REQUESTS,), frozenset({"POST"})),
}
# Every path under the API (unknown ones included) spends these first.
_API_LIMITS = (LimitName.API_ADDRESS, LimitName.API_TOKEN)


@dataclass(frozen=True)
class Charge:
    """One limit to spend for this request, with the key value it counts under."""

    limit: LimitName
    rate: str
    key: str
    # The person the charge is for, when known (the audit event's actor).
    actor: User | None = None

    @property
    def kind(self) -> KeyKind:
        return KEY_OF[self.limit]


def limits_for(url_name: str, path: str, method: str) -> list[LimitName]:
    """The limits a request spends, in the order they are checked (widest key first)."""
    names: list[LimitName] = list(_API_LIMITS) if path.startswith("/api/") else []
    route = _ROUTES.get(url_name)
    if route is not None:
        limits, methods = route
        if methods is None or method in methods:
            names.extend(limits)
    return names


def _bearer(request: HttpRequest) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX) or len(value) > 200:
        return ""
    return value


def _api_person(request: HttpRequest) -> User | None:
    """The person behind the request's API token, if the token is usable now: someone holding
    a revoked or expired token must not spend its owner's budget and lock them out."""
    token = _bearer(request)
    if not token:
        return None
    # Looked up once per request: the view's authentication reuses this row (and judges it again).
    row = find_api_token(token, request)
    if row is None or not row.is_usable_at(timezone.now()) or not row.user.is_active:
        return None
    return row.user


def person_key(user: User) -> str:
    # Identities of one person share one budget: a second IdP is no second allowance.
    return f"person:{user.person_id}" if user.person_id is not None else f"user:{user.pk}"


def charges_for(request: HttpRequest, names: list[LimitName]) -> list[Charge]:
    """The charges for ``names``; a limit that is off, or whose key this request does not have
    (no token, nobody signed in), is skipped."""
    charges: list[Charge] = []
    rates: dict[str, str] = settings.RATE_LIMITS
    for name in names:
        rate = rates.get(name.value, "off")
        if rate == "off":
            continue
        kind = KEY_OF[name]
        if kind is KeyKind.ADDRESS:
            charges.append(Charge(name, rate, f"address:{request_ip(request) or 'unknown'}"))
        elif kind is KeyKind.TOKEN:
            token = _bearer(request)
            if token:
                # Never the token itself in a cache key: its digest, as the database keeps it.
                charges.append(Charge(name, rate, f"token:{digest_of(token)}"))
        else:
            person: User | None = None
            if request.path.startswith("/api/"):
                person = _api_person(request)  # the API is token-only, never the cookie
            elif isinstance(request.user, User) and request.user.is_authenticated:
                person = request.user
            if person is not None:
                charges.append(Charge(name, rate, person_key(person), actor=person))
    return charges


def key_digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]
