"""SCIM groups of one IdP, and the group statements they make (SPEC §4 Directory sync).

A group's ``displayName`` is the directory group name the mapping tables use. Whenever a
membership changes, each member's ``directory_groups`` becomes the SCIM statement (see
``_restate_groups``), and a member who lost entitlements is processed as a mover
(``leavers.py``). The same rules as ``service.py``: scoped to the token's IdP, one durable
transaction per change with its audit events, nothing half-applied on a refusal.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from federation.directory.errors import ScimError, invalid, not_found
from federation.directory.leavers import lost_entitlements, process_mover
from federation.directory.service import audit_scim, check_version, parse_uuid
from federation.models import (
    DirectoryGroup,
    DirectoryMembership,
    DirectoryUser,
    IdentityProvider,
    ScimRequest,
    User,
)


@dataclass(frozen=True)
class GroupFields:
    display_name: str
    external_id: str
    members: tuple[tuple[str, str], ...]  # (SCIM id of one of this IdP's users, display)


def groups_of(idp: IdentityProvider) -> QuerySet[DirectoryGroup]:
    return DirectoryGroup.objects.filter(idp=idp)


def get_group(idp: IdentityProvider, scim_id: str) -> DirectoryGroup:
    found = groups_of(idp).filter(scim_id=parse_uuid(scim_id, "Group")).first()
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
        audit_scim(
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
            .filter(idp=idp, scim_id=parse_uuid(scim_id, "Group"))
            .first()
        )
        if group is None:
            raise not_found("Group", scim_id)
        check_version(group.version, if_match)
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
            audit_scim(
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
            .filter(idp=idp, scim_id=parse_uuid(scim_id, "Group"))
            .first()
        )
        if group is None:
            raise not_found("Group", scim_id)
        member_ids = set(
            DirectoryMembership.objects.filter(group=group).values_list("member_id", flat=True)
        )
        name = group.display_name
        group.delete()
        audit_scim(
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
        displays[parse_uuid(value, "member")] = display[:256]
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
        audit_scim(
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
        audit_scim(
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
