"""Personal API tokens for the JSON API and the fedaccess CLI (SPEC §3.5).

A token is ``fedat_<prefix>_<secret>``; only its SHA-256 is stored, so a database dump yields
nothing usable. Tokens expire (at most ``API_TOKEN_MAX_DAYS``) and can be revoked at any time.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest

from federation.audit.chain import record_event
from federation.models import ApiToken, SignIn, User
from federation.refusals import Refused

TOKEN_PREFIX = "fedat_"  # noqa: S105 - a public marker, not a secret
# last_used_at is refreshed at most this often, so API calls do not all write.
_LAST_USED_RESOLUTION = timedelta(minutes=5)


class TokenRefused(Refused):
    """A token was missing, unknown, expired or revoked (the API answers 401)."""

    code = "unauthenticated"
    status = 401
    title = "Token refused"


class InvalidTokenRequest(TokenRefused):
    code = "invalid_request"
    status = 400


class NoSuchToken(TokenRefused):
    code = "no_such_token"
    status = 404


@dataclass(frozen=True)
class CreatedToken:
    token: ApiToken
    plaintext: str  # shown once, never stored


def digest_of(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_token(
    user: User, *, name: str, lifetime: timedelta, now: datetime, ip: str | None
) -> CreatedToken:
    """Create a token for ``user``. Raises InvalidTokenRequest (400) for a bad name or
    lifetime."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidTokenRequest("Give the token a name of 1 to 100 characters.")
    if any(ord(char) < 32 or 0xD800 <= ord(char) <= 0xDFFF for char in name):
        # NUL would be a database error; other control characters have no place in a label.
        raise InvalidTokenRequest("A token name cannot contain control characters.")
    if not timedelta(days=1) <= lifetime <= timedelta(days=settings.API_TOKEN_MAX_DAYS):
        raise InvalidTokenRequest(
            f"A token lives between 1 and {settings.API_TOKEN_MAX_DAYS} days."
        )
    with transaction.atomic(durable=True):
        return insert_api_token(user, name=name, lifetime=lifetime, now=now, ip=ip)


def insert_api_token(
    user: User, *, name: str, lifetime: timedelta, now: datetime, ip: str | None
) -> CreatedToken:
    """The token row and its audit event, inside the caller's transaction (``create_api_token``
    checks the name and lifetime first; the CLI's browser login hands out a fixed name)."""
    prefix = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=f"{TOKEN_PREFIX}{prefix}",
        digest=digest_of(plaintext),
        created_at=now,
        expires_at=now + lifetime,
    )
    record_event(
        "api_token.created",
        actor=user,
        target=f"api-token:{token.prefix}",
        ip=ip,
        now=now,
        data={"name": name, "expires_at": token.expires_at.isoformat()},
    )
    return CreatedToken(token=token, plaintext=plaintext)


def revoke_api_token(user: User, *, token_id: int, now: datetime, ip: str | None) -> ApiToken:
    """Revoke one of ``user``'s own tokens. Raises NoSuchToken (404) for anyone else's."""
    with transaction.atomic(durable=True):
        token = ApiToken.objects.select_for_update().filter(pk=token_id, user=user).first()
        if token is None:
            raise NoSuchToken("No such token.")
        if token.revoked_at is None:
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
            record_event(
                "api_token.revoked",
                actor=user,
                target=f"api-token:{token.prefix}",
                ip=ip,
                now=now,
                data={"name": token.name},
            )
    return token


# The attribute of an HttpRequest holding the one lookup of its bearer token.
_REQUEST_MEMO = "_fedaccess_api_token"


def _latest_sign_in(field: str) -> Subquery:
    # federation.stepup.rules.latest_sign_in's order: the newest sign-in, the highest id on a tie.
    return Subquery(
        SignIn.objects.filter(user=OuterRef("user")).order_by("-at", "-pk").values(field)[:1]
    )


def find_api_token(plaintext: str, request: HttpRequest | None = None) -> ApiToken | None:
    """The stored token for ``plaintext`` (user and identity provider loaded, and the person's
    latest sign-in: ``latest_sign_in_of``), or None. One SQL statement, made once per request:
    the rate limiter (which charges the person behind the token) and the view share it."""
    digest = digest_of(plaintext)
    if request is not None:
        memo = getattr(request, _REQUEST_MEMO, None)
        if memo is not None and memo[0] == digest:
            return memo[1]  # type: ignore[no-any-return]
    token = (
        ApiToken.objects.select_related("user", "user__idp")
        .annotate(
            latest_sign_in_id=_latest_sign_in("pk"),
            latest_sign_in_mfa=_latest_sign_in("mfa"),
            latest_sign_in_authenticated_at=_latest_sign_in("authenticated_at"),
        )
        .filter(digest=digest)
        .first()
    )
    if request is not None:
        setattr(request, _REQUEST_MEMO, (digest, token))
    return token


def latest_sign_in_of(token: ApiToken) -> SignIn | None:
    """The latest sign-in of the token's person as ``find_api_token`` read it with the token
    (what ``federation.stepup.rules.latest_sign_in`` would read): its id, MFA and
    authentication time; any other field is loaded if asked for."""
    sign_in_id = getattr(token, "latest_sign_in_id", None)
    if sign_in_id is None:
        return None
    return SignIn.from_db(
        token._state.db,
        ["id", "user_id", "mfa", "authenticated_at"],
        [
            sign_in_id,
            token.user_id,
            token.latest_sign_in_mfa,  # type: ignore[attr-defined]
            token.latest_sign_in_authenticated_at,  # type: ignore[attr-defined]
        ],
    )


def authenticate_api_token(
    plaintext: str, *, now: datetime, request: HttpRequest | None = None
) -> ApiToken:
    """The live token for ``plaintext`` (its user loaded). Raises TokenRefused (401).

    With ``request``, the token looked up earlier in the same request (by the rate limiter) is
    judged again here, now, rather than read twice."""
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
        raise TokenRefused("Send a personal API token: Authorization: Bearer fedat_...")
    token = find_api_token(plaintext, request)
    if token is None or not token.is_usable_at(now) or not token.user.is_active:
        raise TokenRefused("This API token is unknown, expired or revoked.")
    # Groups are as fresh as the last sign-in (SECURITY.md §5: re-check the requester).
    max_age = timedelta(hours=settings.API_SIGNIN_MAX_AGE_HOURS)
    last_login = token.user.last_login
    if last_login is None or now - last_login > max_age:
        raise TokenRefused(
            f"Your last sign-in to the portal is more than {settings.API_SIGNIN_MAX_AGE_HOURS} "
            "hours old, so your directory groups may have changed. Sign in to the portal "
            "again; the token stays valid."
        )
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def list_api_tokens(user: User) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user).order_by("-created_at"))
