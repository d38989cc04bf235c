"""What every sign-in protocol shares: turning a verified identity into a session, and refusing.

Protocol adapters (``federation/idp/saml.py``, ``federation/idp/oidc.py``) validate a response
and hand back a ``VerifiedIdentity`` or raise ``SignInRefused``; the views then call
``complete_sign_in`` or ``refusal_response``. Nothing here parses protocol messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from federation.audit.chain import record_event, request_ip
from federation.models import IdentityProvider, SignIn, User

AUTH_BACKEND = "django.contrib.auth.backends.ModelBackend"


class SignInRefused(Exception):
    """A sign-in was refused. ``reason`` is a stable code for the audit log; ``message`` is what
    the person sees. Neither may contain an assertion, a token or a secret."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int = 403,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status
        self.detail = dict(detail or {})


@dataclass(frozen=True)
class VerifiedIdentity:
    """What a protocol adapter vouches for after full validation."""

    idp: IdentityProvider
    subject: str  # the IdP's immutable id (persistent NameID, OIDC sub / oid): the person's key
    email: str
    groups: tuple[str, ...]
    manager: str = ""
    auth_context: Mapping[str, Any] = field(default_factory=dict)


def _username_for(idp: IdentityProvider, subject: str) -> str:
    # Usernames must be unique and short; the subject may be long or contain any character.
    digest = hashlib.sha256(f"{idp.pk}\x00{subject}".encode()).hexdigest()[:32]
    return f"{idp.slug}-{digest}"[:150]


def complete_sign_in(
    request: HttpRequest,
    identity: VerifiedIdentity,
    *,
    now: datetime | None = None,
    consume: Callable[[], None] | None = None,
) -> User:
    """Find or create the person keyed on (IdP, subject), store this sign-in and its groups,
    audit it, and start a fresh session (the session id is rotated).

    ``consume`` (optional) runs first inside the same transaction: a protocol's single-use
    bookkeeping (SAML request and assertion ids, OIDC state). If it raises ``SignInRefused``
    nothing is written. An email change updates the same person; a recycled email on a new
    subject is a new person who inherits nothing.
    """
    now = now or timezone.now()
    groups = sorted(set(identity.groups))
    with transaction.atomic(durable=True):
        if consume is not None:
            consume()
        user = (
            User.objects.select_for_update()
            .filter(idp=identity.idp, subject=identity.subject)
            .first()
        )
        created = user is None
        if user is None:
            user = User(
                idp=identity.idp,
                subject=identity.subject,
                username=_username_for(identity.idp, identity.subject),
            )
            user.set_unusable_password()
        previous_email = user.email
        user.email = identity.email
        user.directory_groups = groups
        user.manager = identity.manager
        user.last_login = now
        user.save()
        SignIn.objects.create(
            user=user,
            idp=identity.idp,
            at=now,
            groups=groups,
            ip=request_ip(request),
            auth_context=dict(identity.auth_context),
        )
        record_event(
            "signin.success",
            actor=user,
            target=f"idp:{identity.idp.slug}",
            ip=request_ip(request),
            now=now,
            data={
                "idp": identity.idp.slug,
                "protocol": identity.idp.protocol,
                "subject": identity.subject,
                "email": identity.email,
                "previous_email": previous_email if previous_email != identity.email else None,
                "new_person": created,
                "groups": groups,
                "manager": identity.manager,
                "auth_context": dict(identity.auth_context),
            },
        )
        # login() calls cycle_key(): a session id planted before sign-in is dead afterwards.
        # Inside the transaction, so the new session row commits with the sign-in record.
        # (last_login is saved above; federation/apps.py drops Django's second UPDATE of it.)
        login(request, user, backend=AUTH_BACKEND)
    return user


def refusal_response(
    request: HttpRequest, idp_slug: str, refusal: SignInRefused, *, protocol: str
) -> HttpResponse:
    """Audit a refused sign-in and answer with a page that says what went wrong (never a 500)."""
    record_event(
        "signin.refused",
        actor="anonymous",
        target=f"idp:{idp_slug}",
        ip=request_ip(request),
        # The standard keys come last so no detail key can overwrite the audited reason or IdP.
        data={**refusal.detail, "idp": idp_slug, "protocol": protocol, "reason": refusal.reason},
    )
    return render(
        request,
        "federation/signin_refused.html",
        {"message": refusal.message, "reason": refusal.reason, "idp": idp_slug},
        status=refusal.status,
    )


def groups_from(values: Sequence[Any] | str | None) -> tuple[str, ...]:
    """Normalise a groups attribute/claim (one value or many) to a tuple of non-empty names."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(sorted({str(v).strip() for v in values if str(v).strip()}))
