"""Completing a sign-in, and refusing one: the last step of every protocol.

Protocol adapters (``saml_response.py``, ``oidc.py``) validate a response and hand back a
``VerifiedIdentity`` or raise ``SignInRefused`` (both in ``identity.py``); the views then call
``complete_sign_in`` or ``refusal_response``. Nothing here parses protocol messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from django.contrib.auth import SESSION_KEY, login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from federation.audit.chain import record_event, record_refusal, request_ip
from federation.idp.identity import SignInRefused, VerifiedIdentity
from federation.models import IdentityProvider, Person, PortalSession, SignIn, User
from federation.observability import metrics
from federation.refusals import refusal_page

AUTH_BACKEND = "django.contrib.auth.backends.ModelBackend"
SIGN_IN_SESSION_KEY = "sign_in_id"  # read by federation/stepup/rules.py


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
    """Find or create the identity keyed on (IdP, subject), link it to its person (see
    ``person_for``), store this sign-in and its groups, audit it, and start a fresh session
    (the session id is rotated).

    ``consume`` (optional) runs first inside the same transaction: a protocol's single-use
    bookkeeping (SAML request and assertion ids, OIDC state). If it raises ``SignInRefused``
    nothing is written. An email change updates the same identity; a recycled email on a new
    subject is a new identity that inherits nothing (access stays with the identity).
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
        if user is not None and not user.is_active:
            # Deactivated over SCIM (a leaver): the IdP may still sign them in (Okta suspends
            # without telling us), but nothing here starts a session for them again.
            raise SignInRefused(
                "This account has been deactivated by your directory.",
                code="signin.deactivated",
            )
        if user is None:
            user = User(
                idp=identity.idp,
                subject=identity.subject,
                username=_username_for(identity.idp, identity.subject),
            )
            user.set_unusable_password()
        previous_email = user.email
        linked_by = "subject"
        if user.person_id is None:
            person, linked_by = person_for(identity, now=now)
            user.person = person
        user.email = identity.email
        user.directory_groups = groups
        user.groups_source = "signin"
        user.groups_updated_at = now
        user.manager = identity.manager
        user.last_login = now
        user.save()
        sign_in = SignIn.objects.create(
            user=user,
            idp=identity.idp,
            at=now,
            groups=groups,
            ip=request_ip(request),
            auth_context=dict(identity.auth_context),
            mfa=identity.mfa.mfa,
            authenticated_at=identity.mfa.authenticated_at,
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
                "person": user.person_id,
                "linked_by": linked_by,
                "groups": groups,
                "manager": identity.manager,
                "auth_context": dict(identity.auth_context),
                "sign_in": sign_in.pk,
                "mfa": identity.mfa.to_json(),
            },
        )
        metrics.record_signin(idp=identity.idp.slug, protocol=identity.idp.protocol)
        # A new session id at every sign-in, so one planted before it is dead afterwards:
        # login() rotates it for a browser nobody was signed in to, and flushes it for another
        # person, but keeps it when the same person signs in again (step-up): rotate that here.
        # Inside the transaction, so the new session row commits with the sign-in record.
        # (last_login is saved above; federation/apps.py drops Django's second UPDATE of it.)
        if request.session.get(SESSION_KEY) == str(user.pk):
            request.session.cycle_key()
        login(request, user, backend=AUTH_BACKEND)
        request.session["signed_in_at"] = int(now.timestamp())  # absolute limit: middleware.py
        # The sign-in this browser session stands on: what step-up judges (stepup/rules.py).
        request.session[SIGN_IN_SESSION_KEY] = sign_in.pk
        # login() has created the session row under a fresh key: remember it, so a leaver's
        # sessions can all be ended (federation/directory/leavers.py).
        if request.session.session_key:
            PortalSession.objects.create(
                user=user, session_key=request.session.session_key, created_at=now
            )
    return user


def link_by_email_allowed(idp: IdentityProvider) -> bool:
    """Whether ``idp``'s email addresses may link a new identity to an existing person. On by
    default (a registered IdP is a corporate directory); ``config["link_by_email"] = false``
    turns it off for an IdP whose users can choose their own address."""
    return idp.config.get("link_by_email", True) is not False


def person_for(identity: VerifiedIdentity, *, now: datetime) -> tuple[Person, str]:
    """The person a not-yet-linked identity belongs to, and how it was found ("email" or
    "new"). Runs once per identity (its first sign-in); the link never moves afterwards.

    An identity joins an existing person by email only when all of these hold, else it is a
    new person:

    * the IdP vouches for the address: its email linking is on (``link_by_email_allowed``)
      and, for OIDC, it said ``email_verified: true`` (Entra ID's "nOAuth": an unverified
      ``email`` claim is whatever the user typed);
    * exactly one person holds that address (case-insensitively) through an *active* identity
      at *another* IdP (a leaver's deactivated identity attracts nobody);
    * that person has no identity at this IdP yet: a new subject at the same IdP with a known
      address is a recycled address or a re-created account, never the same person.

    A wrong link can only refuse more (self-approval): the person shares no access.
    """
    email = identity.email.strip()
    if email and identity.email_verified and link_by_email_allowed(identity.idp):
        holders = (
            User.objects.filter(email__iexact=email, is_active=True, person__isnull=False)
            .exclude(idp=identity.idp)
            .values_list("person_id", flat=True)
            .distinct()
        )
        people = list(holders[:2])
        if (
            len(people) == 1
            and not User.objects.filter(person_id=people[0], idp=identity.idp).exists()
        ):
            return Person.objects.select_for_update().get(pk=people[0]), "email"
    return Person.objects.create(created_at=now), "new"


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
    metrics.record_signin_refused(
        idp=idp_slug,
        protocol=IdentityProvider.Protocol(protocol).value,
        reason=refusal.code,
        # load_idp's refusal: the slug is only the client's text, not one of our IdPs.
        idp_known=not refusal.code.endswith(".unknown_idp"),
    )
    return refusal_page(
        request,
        refusal,
        back_url=reverse("idp:login"),
        back_label="Back to sign-in",
        context={"idp": idp_slug},
    )
