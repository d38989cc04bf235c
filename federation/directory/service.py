"""SCIM users and groups of one IdP (SPEC §3.4 /scim/v2/, §4 Directory sync and leavers).

Every function takes the IdP the caller's token belongs to and touches only that IdP's rows: a
token of another IdP finds nothing (404), whatever id it names. Each change is one durable
transaction with its audit events, naming the ``ScimRequest`` that caused it; a refusal
(``ScimError``) leaves nothing half-applied.

A SCIM user *is* a sign-in identity: ``User(idp, subject)`` where the subject is the SCIM
``userName`` (or ``externalId``, as registered with ``scim_token``). Group names are the
groups' ``displayName``. Whenever a membership changes, each member's ``directory_groups``
becomes the SCIM statement (the most recent statement wins: a later sign-in replaces it again),
and a member who lost entitlements is processed as a mover (``leavers.py``).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from federation.audit.chain import record_event
from federation.directory.errors import ScimError, invalid, not_found
from federation.directory.leavers import lost_entitlements, process_leaver, process_mover
from federation.directory.tokens import scim_subject_of
from federation.idp.identity import VerifiedIdentity
from federation.idp.signin import _username_for, person_for
from federation.models import (
    DirectoryGroup,
    DirectoryMembership,
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


@dataclass(frozen=True)
class GroupFields:
    display_name: str
    external_id: str
    members: tuple[tuple[str, str], ...]  # (SCIM id of one of this IdP's users, display)


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
    found = users_of(idp).filter(scim_id=_uuid(scim_id, "User")).first()
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
            raise ScimError(
                f"userName {fields.user_name!r} is already provisioned.",
                status=409,
                scim_type="uniqueness",
            )
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
        _audit(
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
        _audit(
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
        .filter(idp=idp, scim_id=_uuid(scim_id, "User"))
        .first()
    )
    if entry is None:
        raise not_found("User", scim_id)
    _check_version(entry.version, if_match)
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
        raise ScimError(
            f"userName {fields.user_name!r} is already provisioned.",
            status=409,
            scim_type="uniqueness",
        )
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
    entry.save()
    if fields.active is not None:
        user.is_active = fields.active
    if fields.email:
        user.email = fields.email
    user.save(update_fields=["is_active", "email", "subject"])
    after = {"user_name": entry.user_name, "active": entry.active, "subject": user.subject}
    _audit(
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


# --- Groups ---------------------------------------------------------------------------------


def groups_of(idp: IdentityProvider) -> QuerySet[DirectoryGroup]:
    return DirectoryGroup.objects.filter(idp=idp)


def get_group(idp: IdentityProvider, scim_id: str) -> DirectoryGroup:
    found = groups_of(idp).filter(scim_id=_uuid(scim_id, "Group")).first()
    if found is None:
        raise not_found("Group", scim_id)
    return found


def members_of(group: DirectoryGroup, *, as_sent: bool = False) -> list[tuple[uuid.UUID, str]]:
    """(SCIM id, display) of each member, in a stable order: the display the IdP sent, else
    (unless ``as_sent``) the member's userName."""
    rows = (
        DirectoryMembership.objects.filter(group=group)
        .order_by("member__user_name")
        .values_list("member__scim_id", "display", "member__user_name")
    )
    if as_sent:
        return [(scim_id, display) for scim_id, display, _ in rows]
    return [(scim_id, display or user_name) for scim_id, display, user_name in rows]


def create_group(
    idp: IdentityProvider, fields: GroupFields, *, scim_request: ScimRequest, now: datetime
) -> DirectoryGroup:
    """Raises ScimError 409 ``uniqueness`` for a displayName already provisioned, 400
    ``invalidValue`` for a member that is not one of this IdP's users."""
    with transaction.atomic(durable=True):
        if groups_of(idp).filter(display_name=fields.display_name).exists():
            raise ScimError(
                f"displayName {fields.display_name!r} is already provisioned.",
                status=409,
                scim_type="uniqueness",
            )
        try:
            with transaction.atomic():
                group = DirectoryGroup.objects.create(
                    idp=idp,
                    display_name=fields.display_name,
                    external_id=fields.external_id,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            raise ScimError(
                f"displayName {fields.display_name!r} is already provisioned.",
                status=409,
                scim_type="uniqueness",
            ) from None
        _audit(
            "scim.group_created",
            idp,
            scim_request,
            now,
            target=f"scim-group:{group.display_name}",
            data={"display_name": group.display_name},
        )
        _set_members(idp, group, fields.members, scim_request=scim_request, now=now)
    return group


def change_group(
    idp: IdentityProvider,
    scim_id: str,
    change: Callable[[DirectoryGroup], GroupFields],
    *,
    scim_request: ScimRequest,
    now: datetime,
    if_match: str | None = None,
) -> DirectoryGroup:
    """PUT or PATCH: ``change`` turns the locked group into its new fields (name, members)."""
    with transaction.atomic(durable=True):
        group = (
            DirectoryGroup.objects.select_for_update()
            .filter(idp=idp, scim_id=_uuid(scim_id, "Group"))
            .first()
        )
        if group is None:
            raise not_found("Group", scim_id)
        _check_version(group.version, if_match)
        fields = change(group)
        renamed = fields.display_name != group.display_name
        if renamed and groups_of(idp).filter(display_name=fields.display_name).exists():
            raise ScimError(
                f"displayName {fields.display_name!r} is already provisioned.",
                status=409,
                scim_type="uniqueness",
            )
        before_name = group.display_name
        group.display_name = fields.display_name
        group.external_id = fields.external_id
        group.version += 1
        group.updated_at = now
        group.save()
        if renamed:
            _audit(
                "scim.group_renamed",
                idp,
                scim_request,
                now,
                target=f"scim-group:{group.display_name}",
                data={"before": before_name, "after": group.display_name},
            )
        retired = frozenset({before_name}) if renamed else frozenset()
        changed = _set_members(
            idp, group, fields.members, scim_request=scim_request, now=now, retired=retired
        )
        if renamed:
            # Every member's statement names the group: restate the others too.
            _restate_groups(
                idp,
                set(
                    DirectoryMembership.objects.filter(group=group).values_list(
                        "member_id", flat=True
                    )
                )
                - changed,
                scim_request=scim_request,
                now=now,
                retired=retired,
            )
    return group


def delete_group(
    idp: IdentityProvider, scim_id: str, *, scim_request: ScimRequest, now: datetime
) -> None:
    with transaction.atomic(durable=True):
        group = (
            DirectoryGroup.objects.select_for_update()
            .filter(idp=idp, scim_id=_uuid(scim_id, "Group"))
            .first()
        )
        if group is None:
            raise not_found("Group", scim_id)
        member_ids = set(
            DirectoryMembership.objects.filter(group=group).values_list("member_id", flat=True)
        )
        name = group.display_name
        group.delete()
        _audit(
            "scim.group_deleted",
            idp,
            scim_request,
            now,
            target=f"scim-group:{name}",
            data={"display_name": name, "members": len(member_ids)},
        )
        _restate_groups(
            idp, member_ids, scim_request=scim_request, now=now, retired=frozenset({name})
        )


def _set_members(
    idp: IdentityProvider,
    group: DirectoryGroup,
    members: Iterable[tuple[str, str]],
    *,
    scim_request: ScimRequest,
    now: datetime,
    retired: frozenset[str] = frozenset(),
) -> set[int]:
    """Make the group's members exactly these users; returns the DirectoryUser ids changed."""
    displays: dict[uuid.UUID, str] = {}
    for value, display in members:
        displays[_uuid(value, "member")] = display[:256]
    found = dict(
        DirectoryUser.objects.filter(idp=idp, scim_id__in=displays).values_list("scim_id", "pk")
    )
    missing = set(displays) - set(found)
    if missing:
        raise invalid(
            f"Group members must be this IdP's users; unknown: {sorted(map(str, missing))[:5]}."
        )
    wanted = {found[scim_id]: display for scim_id, display in displays.items()}
    current = dict(
        DirectoryMembership.objects.filter(group=group).values_list("member_id", "display")
    )
    added, removed = set(wanted) - set(current), set(current) - set(wanted)
    if removed:
        DirectoryMembership.objects.filter(group=group, member_id__in=removed).delete()
    if added:
        DirectoryMembership.objects.bulk_create(
            [
                DirectoryMembership(group=group, member_id=pk, display=wanted[pk])
                for pk in sorted(added)
            ],
            batch_size=1000,
        )
    for pk in set(wanted) & set(current):
        if wanted[pk] != current[pk]:
            DirectoryMembership.objects.filter(group=group, member_id=pk).update(display=wanted[pk])
    if added or removed:
        names = dict(
            DirectoryUser.objects.filter(pk__in=added | removed).values_list("pk", "user_name")
        )
        _audit(
            "scim.group_members_changed",
            idp,
            scim_request,
            now,
            target=f"scim-group:{group.display_name}",
            data={
                "display_name": group.display_name,
                "added": sorted(names[pk] for pk in added),
                "removed": sorted(names[pk] for pk in removed),
            },
        )
        _restate_groups(idp, added | removed, scim_request=scim_request, now=now, retired=retired)
    return added | removed


def _restate_groups(
    idp: IdentityProvider,
    entry_ids: set[int],
    *,
    scim_request: ScimRequest,
    now: datetime,
    retired: frozenset[str] = frozenset(),
) -> None:
    """Each user's groups become the SCIM statement, the most recent one: SCIM decides the
    membership of every group it provisions (and of ``retired``, a group just renamed or
    deleted); a group it does not provision keeps what the last sign-in said. So an initial
    sync, pushing one group at a time, never takes away a group it has not pushed yet. A member
    who lost entitlements is processed as a mover."""
    if not entry_ids:
        return
    managed = set(groups_of(idp).values_list("display_name", flat=True)) | retired
    statement: dict[int, set[str]] = defaultdict(set)
    for user_id, name in DirectoryMembership.objects.filter(member_id__in=entry_ids).values_list(
        "member__user_id", "group__display_name"
    ):
        statement[user_id].add(name)
    users = list(
        User.objects.select_for_update().filter(directory_entry__pk__in=entry_ids).order_by("pk")
    )
    changed: list[User] = []
    movers: list[tuple[User, list[str]]] = []
    for user in users:
        before = [str(g) for g in user.directory_groups]
        after = sorted({g for g in before if g not in managed} | statement.get(user.pk, set()))
        if before == after and user.groups_source == "scim":
            continue
        user.directory_groups = after
        user.groups_source = "scim"
        user.groups_updated_at = now
        changed.append(user)
        if user.is_active and not set(before) <= set(after):
            movers.append((user, before))
    _save_statements(changed, now=now)
    for user, before in movers:
        lost = lost_entitlements(user, before, user.directory_groups, now=now)
        _audit(
            "directory.groups_changed",
            idp,
            scim_request,
            now,
            user=user,
            data={
                "before": before,
                "after": user.directory_groups,
                "lost": sorted(map("/".join, lost)),
            },
        )
        if lost:
            process_mover(user, lost, idp=idp, scim_request=scim_request, now=now)


def _save_statements(users: list[User], *, now: datetime) -> None:
    """Write each user's new ``directory_groups`` (one statement on PostgreSQL: a group PATCH
    of 1,000 members restates 1,000 people, and Django's bulk_update builds a CASE per row)."""
    if not users:
        return
    if connection.vendor != "postgresql":
        User.objects.bulk_update(
            users, ["directory_groups", "groups_source", "groups_updated_at"], batch_size=500
        )
        return
    table = User._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS u SET directory_groups = v.groups::jsonb, "  # noqa: S608 - our table name
            "groups_source = 'scim', groups_updated_at = %s "
            "FROM unnest(%s::int[], %s::text[]) AS v(id, groups) WHERE u.id = v.id",
            [now, [u.pk for u in users], [json.dumps(u.directory_groups) for u in users]],
        )


# --- Shared ---------------------------------------------------------------------------------


def _subject_attr(idp: IdentityProvider) -> str:
    return scim_subject_of(idp).value


def _subject(idp: IdentityProvider, fields: UserFields) -> str:
    if scim_subject_of(idp) == ScimSubject.EXTERNAL_ID:
        if not fields.external_id:
            raise invalid(f"{idp.slug} matches sign-ins on externalId: send one.")
        return fields.external_id
    return fields.user_name


def _uuid(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        if kind == "member":
            raise invalid(f"{str(value)[:64]!r} is not a member id of this service.") from None
        raise not_found(kind, str(value)) from None


def _check_version(version: int, if_match: str | None) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    tags = {tag.strip() for tag in if_match.split(",")}
    if etag(version) not in tags and etag(version).removeprefix("W/") not in tags:
        raise ScimError("The resource changed since you read it (If-Match).", status=412)


def etag(version: int) -> str:
    return f'W/"{version}"'


def _audit(
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
