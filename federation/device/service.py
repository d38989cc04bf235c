"""Device-authorization style login for the fedaccess CLI (issue 20; the shape of RFC 8628).

1. The CLI starts a login (no credentials): it gets a secret device code, a short user code and
   the portal URL to visit.
2. The person signs in to the portal as usual, sees the user code and the client's name, and
   approves (or denies) it. Only someone signed in can approve, and the token that results is
   theirs: the identity of that sign-in.
3. The CLI polls with the device code and receives one API token, exactly once.

The device code is a bearer secret held by the CLI alone; only its SHA-256 is stored. A user code
is short-lived (``LIFETIME``) and one approval can hand out one token. Every approval, denial and
redemption is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from federation.audit.chain import record_event, record_refusal
from federation.issuance.tokens import insert_api_token
from federation.models import DeviceLogin, User
from federation.refusals import Refused

LIFETIME = timedelta(minutes=10)
POLL_SECONDS = 5
# Tokens from a browser login live this long (capped by API_TOKEN_MAX_DAYS).
TOKEN_DAYS = 30
# Unauthenticated starts are cheap to send: bound how many can wait at once.
MAX_PENDING = 1000
# No vowels or look-alikes (0/O, 1/I/L): codes are read aloud and typed, and spell no words.
_ALPHABET = "BCDFGHJKMNPQRSTVWXZ"


class DeviceLoginRefused(Refused):
    code = "device_login_refused"
    status = 400
    title = "Command-line sign-in refused"


class UnknownUserCode(DeviceLoginRefused):
    code = "unknown_code"
    status = 404


class LoginNotPending(DeviceLoginRefused):
    code = "login_not_pending"
    status = 409


class TooManyLogins(DeviceLoginRefused):
    code = "too_many_logins"
    status = 503


class PollRefused(DeviceLoginRefused):
    """An answer to a poll that is not a token; ``code`` says why (RFC 8628 §3.5 names)."""

    code = "authorization_pending"


@dataclass(frozen=True)
class StartedLogin:
    device_code: str  # shown to the CLI once, never stored
    login: DeviceLogin

    @property
    def verification_uri(self) -> str:
        return f"{settings.BASE_URL}/device/"

    @property
    def verification_uri_complete(self) -> str:
        return f"{self.verification_uri}?code={self.login.user_code}"


def _digest(device_code: str) -> str:
    return hashlib.sha256(device_code.encode()).hexdigest()


def _user_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalise_user_code(value: str) -> str:
    """What a person typed (any case, with or without the dash) as the stored form."""
    letters = "".join(ch for ch in value.upper() if ch.isascii() and ch.isalpha())[:8]
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else ""


def start_device_login(*, client: str, now: datetime) -> StartedLogin:
    """A new pending login. Raises TooManyLogins when too many wait already."""
    waiting = DeviceLogin.objects.filter(state=DeviceLogin.State.PENDING, expires_at__gt=now)
    if waiting.count() >= MAX_PENDING:
        raise TooManyLogins("Too many command-line sign-ins are waiting; try again in a minute.")
    device_code = secrets.token_urlsafe(32)
    for _ in range(5):  # a clash with a pending code is rare; draw again
        try:
            with transaction.atomic(durable=True):
                login = DeviceLogin.objects.create(
                    device_digest=_digest(device_code),
                    user_code=_user_code(),
                    client=client[:100],
                    created_at=now,
                    expires_at=now + LIFETIME,
                )
            return StartedLogin(device_code=device_code, login=login)
        except IntegrityError:
            continue
    raise TooManyLogins("Could not draw a free sign-in code; try again.")


def find_pending(user_code: str, *, now: datetime) -> DeviceLogin | None:
    code = normalise_user_code(user_code)
    if not code:
        return None
    return DeviceLogin.objects.filter(
        user_code=code, state=DeviceLogin.State.PENDING, expires_at__gt=now
    ).first()


def decide_device_login(
    user_code: str, *, actor: User, approve: bool, now: datetime, ip: str | None
) -> DeviceLogin:
    """The signed-in ``actor`` approves (the CLI will receive a token of theirs) or denies the
    pending login with this user code. Raises UnknownUserCode (none pending, or expired:
    audited) and LoginNotPending."""
    code = normalise_user_code(user_code)
    with transaction.atomic(durable=True):
        login = (
            DeviceLogin.objects.select_for_update()
            .filter(user_code=code, state=DeviceLogin.State.PENDING, expires_at__gt=now)
            .first()
            if code
            else None
        )
        if login is None:
            refusal = UnknownUserCode(
                "No command-line sign-in is waiting with that code (codes last 10 minutes). "
                "Run `fedaccess login` again."
            )
            record_refusal(
                "device_login.refused",
                refusal,
                actor=actor,
                target=f"device-login:{code or '?'}",
                ip=ip,
                now=now,
            )
        else:
            login.state = DeviceLogin.State.APPROVED if approve else DeviceLogin.State.DENIED
            login.user = actor if approve else None
            login.decided_at = now
            login.save(update_fields=["state", "user", "decided_at"])
            record_event(
                "device_login.approved" if approve else "device_login.denied",
                actor=actor,
                target=f"device-login:{login.user_code}",
                ip=ip,
                now=now,
                data={"client": login.client, "started_at": login.created_at.isoformat()},
            )
            return login
    raise refusal


def redeem_device_code(device_code: str, *, now: datetime, ip: str | None) -> tuple[str, datetime]:
    """The CLI's poll: the plaintext token and its expiry, once, after approval. Raises
    PollRefused with code ``authorization_pending`` (keep polling), ``access_denied``,
    ``expired_token`` or ``invalid_grant`` (unknown, or already redeemed)."""
    with transaction.atomic(durable=True):
        login = (
            # No join: a row re-read after waiting on the lock (an approval committing) would
            # come with the joined user as of before; the user is loaded after the lock.
            DeviceLogin.objects.select_for_update()
            .filter(device_digest=_digest(device_code))
            .first()
        )
        if login is None or login.state == DeviceLogin.State.REDEEMED:
            raise PollRefused("Unknown or already used device code.", code="invalid_grant")
        if login.state == DeviceLogin.State.DENIED:
            raise PollRefused(
                "The sign-in was denied on the portal.", code="access_denied", status=403
            )
        if login.expires_at <= now:
            raise PollRefused(
                "The sign-in code expired; run `fedaccess login` again.", code="expired_token"
            )
        if login.state == DeviceLogin.State.PENDING:
            raise PollRefused("Waiting for approval on the portal.", code="authorization_pending")
        assert login.user_id is not None  # approved: the check constraint holds it
        holder = User.objects.get(pk=login.user_id)
        days = min(TOKEN_DAYS, settings.API_TOKEN_MAX_DAYS)
        name = f"fedaccess login {login.user_code}" + (f" ({login.client})" if login.client else "")
        created = insert_api_token(
            holder, name=name[:100], lifetime=timedelta(days=days), now=now, ip=ip
        )
        login.state = DeviceLogin.State.REDEEMED
        login.token = created.token
        login.save(update_fields=["state", "token"])
    return created.plaintext, created.token.expires_at
