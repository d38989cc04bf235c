"""SCIM users of one IdP (SPEC §3.4 /scim/v2/, §4 Directory sync and leavers); groups are in
``groups.py``.

Every function takes the IdP the caller's token belongs to and touches only that IdP's rows: a
token of another IdP finds nothing (404), whatever id it names. Each change is one durable
transaction with its audit events, naming the ``ScimRequest`` that caused it; a refusal
(``ScimError``) leaves nothing half-applied.

A SCIM user *is* a sign-in identity: ``User(idp, subject)`` where the subject is the SCIM
``userName`` (or ``externalId``, as registered with ``scim_token``). Deactivating or deleting
it makes a leaver (``leavers.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from federation.audit.chain import record_event
from federation.directory.errors import ScimError, invalid, not_found
from federation.directory.leavers import process_leaver
from federation.directory.tokens import scim_subject_of
from federation.idp.identity import VerifiedIdentity
from federation.idp.signin import _username_for, person_for
from federation.models import (
    DirectoryGroup,
    DirectoryUser,
    IdentityProvider,
    LeaverKind,
    ScimRequest,
    ScimSubject,
    User,
)


@dataclass(frozen=True)
class UserFields:
    user_name: str
    external_id: str
    active: bool | None  # None: the IdP sent none (the identity stays as it was)
    email: str
    attributes: dict[str, Any]


# --- The request log ------------------------------------------------------------------------


def open_request(
    idp: IdentityProvider | None, *, method: str, path: str, now: datetime
) -> ScimRequest:
    """Log a SCIM call before it runs (autocommit), so its effects can name it."""
    return ScimRequest.objects.create(idp=idp, at=now, method=method[:8], path=path[:500])


def close_request(scim_request: ScimRequest, *, status: int, error: ScimError | None) -> None:
    ScimRequest.objects.filter(pk=scim_request.pk).update(
        status=status,
        scim_type=error.scim_type[:32] if error is not None else "",
        error=error.message[:500] if error is not None else "",
    )


# --- Users ----------------------------------------------------------------------------------


def users_of(idp: IdentityProvider) -> QuerySet[DirectoryUser]:
    return DirectoryUser.objects.filter(idp=idp).select_related("user")


def get_user(idp: IdentityProvider, scim_id: str) -> DirectoryUser:
    found = users_of(idp).filter(scim_id=parse_uuid(scim_id, "User")).first()
    if found is None:
        raise not_found("User", scim_id)
    return found


def create_user(
    idp: IdentityProvider, fields: UserFields, *, scim_request: ScimRequest, now: datetime
) -> DirectoryUser:
    """Provision a user: the identity ``(idp, subject)`` is created, or taken over if it has
    signed in already. Raises ScimError 409 ``uniqueness`` for a userName already provisioned."""
    subject = _subject(idp, fields)
    with transaction.atomic(durable=True):
        if users_of(idp).filter(user_name__iexact=fields.user_name).exists():
            raise _taken(fields.user_name)
        user = User.objects.select_for_update().filter(idp=idp, subject=subject).first()
        if user is not None and hasattr(user, "directory_entry"):
            raise ScimError(
                f"{_subject_attr(idp)} {subject!r} is already provisioned.",
                status=409,
                scim_type="uniqueness",
            )
        if user is None:
            user = User(idp=idp, subject=subject, username=_username_for(idp, subject))
            user.set_unusable_password()
            user.email = fields.email
            person, _ = person_for(
                VerifiedIdentity(idp=idp, subject=subject, email=fields.email, groups=()),
                now=now,
            )
            user.person = person
        user.is_active = fields.active is not False
        if not user.email:
            user.email = fields.email
        try:
            user.save()
            entry = DirectoryUser.objects.create(
                idp=idp,
                user=user,
                user_name=fields.user_name,
                external_id=fields.external_id,
                active=fields.active,
                attributes=fields.attributes,
                created_at=now,
                updated_at=now,
            )
        except IntegrityError:
            # The same user pushed twice at once: the other request's commit won.
            raise _taken(fields.user_name) from None
        audit_scim(
            "scim.user_created",
            idp,
            scim_request,
            now,
            user=user,
            data={"user_name": fields.user_name, "active": fields.active},
        )
    return entry


def replace_user(
    idp: IdentityProvider,
    scim_id: str,
    fields: UserFields,
    *,
    scim_request: ScimRequest,
    now: datetime,
    if_match: str | None = None,
) -> DirectoryUser:
    """PUT: the user becomes ``fields``. Deactivation makes them a leaver (``leavers.py``)."""
    with transaction.atomic(durable=True):
        entry = _locked_user(idp, scim_id, if_match)
        _apply_user(idp, entry, fields, scim_request=scim_request, now=now)
    return entry


def patch_user(
    idp: IdentityProvider,
    scim_id: str,
    change: Callable[[DirectoryUser], UserFields],
    *,
    scim_request: ScimRequest,
    now: datetime,
    if_match: str | None = None,
) -> DirectoryUser:
    """PATCH: ``change`` (the operations, applied by ``resources.py``) turns the locked current
    user into the new fields; then as ``replace_user``."""
    with transaction.atomic(durable=True):
        entry = _locked_user(idp, scim_id, if_match)
        _apply_user(idp, entry, change(entry), scim_request=scim_request, now=now)
    return entry


def delete_user(
    idp: IdentityProvider, scim_id: str, *, scim_request: ScimRequest, now: datetime
) -> None:
    """DELETE: the identity is deactivated and loses everything (a leaver); its SCIM record and
    memberships go, the identity row stays for the audit trail."""
    with transaction.atomic(durable=True):
        entry = _locked_user(idp, scim_id, None)
        user = entry.user
        groups = list(entry.groups.values_list("display_name", flat=True))
        user.is_active = False
        user.directory_groups = []
        user.groups_source = "scim"
        user.groups_updated_at = now
        user.save(
            update_fields=["is_active", "directory_groups", "groups_source", "groups_updated_at"]
        )
        DirectoryGroup.objects.filter(directorymembership__member=entry).update(updated_at=now)
        entry.delete()
        audit_scim(
            "scim.user_deleted",
            idp,
            scim_request,
            now,
            user=user,
            data={"user_name": entry.user_name, "groups": sorted(groups)},
        )
        process_leaver(user, idp=idp, kind=LeaverKind.DELETED, scim_request=scim_request, now=now)


def _locked_user(idp: IdentityProvider, scim_id: str, if_match: str | None) -> DirectoryUser:
    entry = (
        DirectoryUser.objects.select_for_update(of=("self", "user"))
        .select_related("user")
        .filter(idp=idp, scim_id=parse_uuid(scim_id, "User"))
        .first()
    )
    if entry is None:
        raise not_found("User", scim_id)
    check_version(entry.version, if_match)
    return entry


def _apply_user(
    idp: IdentityProvider,
    entry: DirectoryUser,
    fields: UserFields,
    *,
    scim_request: ScimRequest,
    now: datetime,
) -> None:
    user = entry.user
    if (
        fields.user_name.casefold() != entry.user_name.casefold()
        and users_of(idp).filter(user_name__iexact=fields.user_name).exclude(pk=entry.pk).exists()
    ):
        raise _taken(fields.user_name)
    subject = _subject(idp, fields)
    before = {"user_name": entry.user_name, "active": entry.active, "subject": user.subject}
    if subject != user.subject:
        # A rename at the IdP: its sign-ins now carry the new subject, so the identity follows.
        if User.objects.filter(idp=idp, subject=subject).exclude(pk=user.pk).exists():
            raise ScimError(
                f"{_subject_attr(idp)} {subject!r} belongs to another identity.",
                status=409,
                scim_type="uniqueness",
            )
        user.subject = subject
    deactivated = user.is_active and fields.active is False
    entry.user_name = fields.user_name
    entry.external_id = fields.external_id
    entry.active = fields.active
    entry.attributes = fields.attributes
    entry.version += 1
    entry.updated_at = now
    if fields.active is not None:
        user.is_active = fields.active
    if fields.email:
        user.email = fields.email
    try:
        with transaction.atomic():
            entry.save()
            user.save(update_fields=["is_active", "email", "subject"])
    except IntegrityError:
        raise _taken(fields.user_name) from None
    after = {"user_name": entry.user_name, "active": entry.active, "subject": user.subject}
    audit_scim(
        "scim.user_updated",
        idp,
        scim_request,
        now,
        user=user,
        data={"before": before, "after": after},
    )
    if deactivated:
        process_leaver(
            user, idp=idp, kind=LeaverKind.DEACTIVATED, scim_request=scim_request, now=now
        )


# --- Shared ---------------------------------------------------------------------------------


def _taken(user_name: str) -> ScimError:
    return ScimError(
        f"userName {user_name!r} is already provisioned.", status=409, scim_type="uniqueness"
    )


def _subject_attr(idp: IdentityProvider) -> str:
    return scim_subject_of(idp).value


def _subject(idp: IdentityProvider, fields: UserFields) -> str:
    if scim_subject_of(idp) == ScimSubject.EXTERNAL_ID:
        if not fields.external_id:
            raise invalid(f"{idp.slug} matches sign-ins on externalId: send one.")
        return fields.external_id
    return fields.user_name


def parse_uuid(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        if kind == "member":
            raise invalid(f"{str(value)[:64]!r} is not a member id of this service.") from None
        raise not_found(kind, str(value)) from None


def check_version(version: int, if_match: str | None) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    tags = {tag.strip() for tag in if_match.split(",")}
    if etag(version) not in tags and etag(version).removeprefix("W/") not in tags:
        raise ScimError("The resource changed since you read it (If-Match).", status=412)


def etag(version: int) -> str:
    return f'W/"{version}"'


def audit_scim(
    event_type: str,
    idp: IdentityProvider,
    scim_request: ScimRequest,
    now: datetime,
    *,
    user: User | None = None,
    target: str = "",
    data: dict[str, Any],
) -> None:
    record_event(
        event_type,
        actor=f"scim:{idp.slug}",
        target=target or (f"user:{user.pk}" if user is not None else f"idp:{idp.slug}"),
        now=now,
        data={"idp": idp.slug, "scim_request": scim_request.pk, **data},
    )
