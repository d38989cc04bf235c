"""Completing a sign-in, and refusing one: the last step of every protocol.

Protocol adapters (``saml_response.py``, ``oidc.py``) validate a response and hand back a
``VerifiedIdentity`` or raise ``SignInRefused`` (both in ``identity.py``); the views then call
``complete_sign_in`` or ``refusal_response``. Nothing here parses protocol messages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime

from django.contrib.auth import SESSION_KEY, login
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from federation import rawsql
from federation.audit.chain import (
    appends_in_one_statement,
    record_event,
    record_refusal,
    request_ip,
)
from federation.idp.identity import SignInRefused, SingleUse, VerifiedIdentity
from federation.models import IdentityProvider, Person, PortalSession, SignIn, User
from federation.observability import metrics
from federation.rawsql import pipelined
from federation.refusals import refusal_page

AUTH_BACKEND = "federation.edge.auth.UserBackend"  # settings.AUTHENTICATION_BACKENDS
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
    claims: Sequence[SingleUse] = (),
) -> User:
    """Find or create the identity keyed on (IdP, subject), link it to its person (see
    ``person_for``), store this sign-in and its groups, audit it, and start a fresh session
    (the session id is rotated).

    ``claims`` (optional): a protocol's single-use records (SAML request and assertion ids),
    each of which must change one row in this transaction, else the sign-in is refused with its
    refusal and nothing is written. An email change updates the same identity; a recycled email
    on a new subject is a new identity that inherits nothing (access stays with the identity).

    One transaction and one commit. A returning identity (the 9 a.m. case) costs two round
    trips to the database before the commit: the claims, the identity's refresh and the
    sign-in's id together, then the sign-in, its session record and (batched sequencing) its
    audit event together (``federation.rawsql``).
    """
    groups = sorted(set(identity.groups))
    # The returning-identity refresh and the sign-in id from its sequence are PostgreSQL's;
    # elsewhere (SQLite, the demo) every identity takes the ORM's path and the ORM's insert.
    postgresql = connection.vendor == "postgresql"
    sign_in_id: int | None = None
    known: tuple[User, str] | None = None
    with transaction.atomic(durable=True):
        with pipelined() as sync, connection.cursor() as ids, connection.cursor() as refresh:
            claimed = [_execute(claim) for claim in claims]
            if postgresql:
                ids.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [SIGN_IN_TABLE])
                read_known = _refresh_known_identity(refresh, identity, groups, now=now)
            sync()
            if postgresql:
                sign_in_id = int(ids.fetchone()[0])
                known = read_known()
        for cursor, claim in claimed:
            used = cursor.rowcount
            cursor.close()
            if used != 1:
                raise claim.refusal
        if known is not None:
            user, previous_email = known
            created, linked_by = False, "subject"
        else:
            user, previous_email, created, linked_by = _write_identity(identity, groups, now=now)
        ip = request_ip(request)
        if not postgresql:  # the ORM's insert gives the id; PostgreSQL's row goes in below
            sign_in_id = SignIn.objects.create(
                user=user,
                idp=identity.idp,
                at=now,
                groups=groups,
                ip=ip,
                auth_context=dict(identity.auth_context),
                mfa=identity.mfa.mfa,
                authenticated_at=identity.mfa.authenticated_at,
            ).pk
        metrics.record_signin(idp=identity.idp.slug, protocol=identity.idp.protocol)
        # A new session id at every sign-in, so one planted before it is dead afterwards:
        # login() rotates it for a browser nobody was signed in to, and flushes it for another
        # person, but keeps it when the same person signs in again (step-up): rotate that here.
        # Inside the transaction, so a session row (PostgreSQL store) commits with the sign-in.
        # (last_login is saved above; federation/apps.py drops Django's second UPDATE of it.)
        if request.session.get(SESSION_KEY) == str(user.pk):
            request.session.cycle_key()
        login(request, user, backend=AUTH_BACKEND)
        request.session["signed_in_at"] = int(now.timestamp())  # absolute limit: middleware.py
        # The sign-in this browser session stands on: what step-up judges (stepup/rules.py).
        request.session[SIGN_IN_SESSION_KEY] = sign_in_id

        def audit() -> None:
            record_event(
                "signin.success",
                actor=user,
                target=f"idp:{identity.idp.slug}",
                ip=ip,
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
                    "sign_in": sign_in_id,
                    "mfa": identity.mfa.to_json(),
                },
            )

        with pipelined(), connection.cursor() as cursor:
            if postgresql:
                cursor.execute(
                    _INSERT_SIGN_IN,
                    [
                        sign_in_id,
                        user.pk,
                        identity.idp.pk,
                        now,
                        json.dumps(groups),
                        ip,
                        json.dumps(dict(identity.auth_context), default=str),
                        identity.mfa.mfa,
                        identity.mfa.authenticated_at,
                    ],
                )
            # login() has given the session a fresh key: remember it, so a leaver's sessions
            # can all be ended (federation/directory/leavers.py).
            if request.session.session_key:
                cursor.execute(_INSERT_PORTAL_SESSION, [user.pk, request.session.session_key, now])
            # Batched sequencing: the event is one INSERT and joins this round trip.
            appended = appends_in_one_statement()
            if appended:
                audit()
        if not appended:
            audit()  # inline sequencing reads its own answers: after the pipeline
    return user


SIGN_IN_TABLE = SignIn._meta.db_table
# The sign-in path's own inserts, written once (no ORM compile per sign-in) so they can share a
# round trip: the id comes from the sequence beforehand, nothing is read back.
_INSERT_SIGN_IN = (
    f"INSERT INTO {SIGN_IN_TABLE} "  # noqa: S608 - only our table name
    "(id, user_id, idp_id, at, groups, ip, auth_context, mfa, authenticated_at) "
    "VALUES (%s, %s, %s, %s, %s::jsonb, %s::inet, %s::jsonb, %s, %s)"
)
_INSERT_PORTAL_SESSION = (
    f"INSERT INTO {PortalSession._meta.db_table} (user_id, session_key, created_at) "  # noqa: S608
    "VALUES (%s, %s, %s)"
)


def _execute(claim: SingleUse) -> tuple[CursorWrapper, SingleUse]:
    cursor = connection.cursor()
    cursor.execute(claim.sql, list(claim.params))
    return cursor, claim


_REFRESH_IDENTITY = f"""WITH old AS (
        SELECT id, email FROM {User._meta.db_table}
        WHERE idp_id = %s AND subject = %s FOR UPDATE
    )
    UPDATE {User._meta.db_table} AS u SET email = %s, directory_groups = %s::jsonb,
        groups_source = 'signin', groups_updated_at = %s, manager = %s, last_login = %s
    FROM old
    WHERE u.id = old.id AND u.is_active AND u.person_id IS NOT NULL
    RETURNING old.email, {rawsql.columns(User, "u")}"""  # noqa: S608


def _refresh_known_identity(
    cursor: CursorWrapper, identity: VerifiedIdentity, groups: list[str], *, now: datetime
) -> Callable[[], tuple[User, str] | None]:
    """Store this sign-in's facts on an existing, active identity already linked to its person,
    in one statement that also locks the row and hands back the email it had. Returns the
    reader to call once the answers are in (``pipelined``'s sync): the user and that email, or
    None when there is no such identity (new, unlinked or deactivated: ``_write_identity``
    decides)."""
    cursor.execute(
        _REFRESH_IDENTITY,
        (
            identity.idp.pk,
            identity.subject,
            identity.email,
            json.dumps(groups),
            now,
            identity.manager,
            now,
        ),
    )

    def read() -> tuple[User, str] | None:
        row = cursor.fetchone()
        if row is None:
            return None
        user = rawsql.instance(User, row[1:])
        user.idp = identity.idp  # the caller's IdP object: no second read
        return user, str(row[0])

    return read


def _write_identity(
    identity: VerifiedIdentity, groups: list[str], *, now: datetime
) -> tuple[User, str, bool, str]:
    """Create the identity (a first sign-in), link it to its person, or refuse a deactivated
    one; returns the user, its previous email, whether it is new and how it was linked."""
    user = (
        User.objects.select_for_update().filter(idp=identity.idp, subject=identity.subject).first()
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
    return user, previous_email, created, linked_by


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
