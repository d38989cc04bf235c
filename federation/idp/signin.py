"""Completing a sign-in, and refusing one: the last step of every protocol.

Protocol adapters (``saml_response.py``, ``oidc.py``) validate a response and hand back a
``VerifiedIdentity`` or raise ``SignInRefused`` (both in ``identity.py``); the views then call
``complete_sign_in`` or ``refusal_response``. Nothing here parses protocol messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from django.contrib.auth import login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from federation.audit.chain import record_event, record_refusal, request_ip
from federation.idp.identity import SignInRefused, VerifiedIdentity
from federation.models import IdentityProvider, SignIn, User
from federation.refusals import refusal_page

AUTH_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _username_for(idp: IdentityProvider, subject: str) -> str:
    # Usernames must be unique and short; the subject may be long or contain any character.
    digest = hashlib.sha256(f"{idp.pk}\x00{subject}".encode()).hexdigest()[:32]
    return f"{idp.slug}-{digest}"[:150]


def complete_sign_in(
    request: HttpRequest,
    identity: VerifiedIdentity,
    *,
    now: datetime,
    consume: Callable[[], None] | None = None,
) -> User:
    """Find or create the person keyed on (IdP, subject), store this sign-in and its groups,
    audit it, and start a fresh session (the session id is rotated).

    ``consume`` (optional) runs first inside the same transaction: a protocol's single-use
    bookkeeping (SAML request and assertion ids, OIDC state). If it raises ``SignInRefused``
    nothing is written. An email change updates the same person; a recycled email on a new
    subject is a new person who inherits nothing.
    """
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
        request.session["signed_in_at"] = int(now.timestamp())  # absolute limit: middleware.py
    return user


def refusal_response(
    request: HttpRequest,
    idp_slug: str,
    refusal: SignInRefused,
    *,
    protocol: IdentityProvider.Protocol,
    now: datetime,
) -> HttpResponse:
    """Audit a refused sign-in and answer with a page that says what went wrong (never a 500)."""
    # The IdP and protocol are ours to state: a refusal's detail must not overwrite them.
    detail = {k: v for k, v in refusal.detail.items() if k not in ("idp", "protocol")}
    record_refusal(
        "signin.refused",
        SignInRefused(refusal.message, code=refusal.code, status=refusal.status, detail=detail),
        actor="anonymous",
        target=f"idp:{idp_slug}",
        ip=request_ip(request),
        now=now,
        data={"idp": idp_slug, "protocol": IdentityProvider.Protocol(protocol).value},
    )
    return refusal_page(
        request,
        refusal,
        back_url=reverse("idp:login"),
        back_label="Back to sign-in",
        context={"idp": idp_slug},
    )
