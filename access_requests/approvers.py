"""Who may decide, revoke or be told about a request (SPEC §4, SECURITY.md §5).

Approvers are people whose *current* directory groups meet the approver groups that apply; the
requester never counts, through any of their identities (``User.is_same_person``). Services
re-check these under their locks.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from access_requests.models import AccessRequest, Grant
from federation.aws.names import session_name_for
from federation.models import User
from federation.permissions import is_admin


def same_person(a: User, b: User) -> bool:
    """Whether ``a`` and ``b`` may be one human: the same identity, the same person through
    another IdP, or the same email address (``User.is_same_person``). For refusals only."""
    return a.is_same_person(b)


def approver_groups_for(access_request: AccessRequest) -> frozenset[str]:
    """The business unit's approver groups, the account's extra ones and, where the eligible
    mapping row names its own, that row's."""
    account = access_request.account
    groups = set(account.business_unit.approver_groups) | set(account.approver_groups)
    if access_request.mapping is not None:
        groups |= set(access_request.mapping.approver_groups)
    return frozenset(str(g) for g in groups)


def reloaded(user: User) -> User:
    """``user`` as the database holds it now. Services pass this to the rules below rather than
    the caller's (possibly long-lived) object: a sign-in in between may have removed a group."""
    return User.objects.get(pk=user.pk)


def is_approver(user: User, access_request: AccessRequest) -> bool:
    """Whether ``user`` may decide this request: in one of its approver groups, never their own.
    Judged on ``user.directory_groups`` as loaded (see ``reloaded``)."""
    if same_person(user, access_request.requester):
        return False
    return in_approver_groups(user, access_request)


def in_approver_groups(user: User, access_request: AccessRequest) -> bool:
    """Whether ``user``'s groups meet the request's approver groups (the requester included)."""
    return bool({str(g) for g in user.directory_groups} & approver_groups_for(access_request))


def may_review_break_glass(user: User, activation: AccessRequest) -> bool:
    """Whether ``user`` may review a break-glass activation: an approver of its account or an
    admin, never its own user through any identity. Judged on groups as loaded."""
    if same_person(user, activation.requester):
        return False
    return is_admin(user) or in_approver_groups(user, activation)


def may_see_request(user: User, access_request: AccessRequest) -> bool:
    """Whether the request is within ``user``'s reach: their own (through any identity), one of
    a unit or account they approve for, or any for an admin. Anyone else is answered as if it
    did not exist (``refusals.NotFound``). Judged on groups as loaded (see ``reloaded``)."""
    return (
        is_admin(user)
        or same_person(user, access_request.requester)
        or in_approver_groups(user, access_request)
    )


def may_see_grant(user: User, grant: Grant) -> bool:
    """As ``may_see_request``, for a grant: its holder, who may revoke it, and admins."""
    return may_revoke(user, grant) or same_person(user, grant.user)


def may_revoke(user: User, grant: Grant) -> bool:
    """Whether ``user`` may revoke this grant: admins, and anyone in an approver group of its
    request (the holder included: ending one's own access early is harmless). Judged on
    ``user.directory_groups`` as loaded (see ``reloaded``)."""
    if is_admin(user):
        return True
    return in_approver_groups(user, grant.request)


def list_approvers(access_request: AccessRequest) -> list[User]:
    """Active users who may decide this request now (the requester excluded)."""
    groups = approver_groups_for(access_request)
    if not groups:
        return []
    users: QuerySet[User] = User.objects.filter(is_active=True)
    if connection.vendor == "postgresql":
        # jsonb ?| on the array of groups; SQLite (demo) filters in Python below.
        users = users.filter(directory_groups__has_any_keys=sorted(groups))
    return [u for u in users.order_by("pk") if is_approver(u, access_request)]


def list_admins() -> list[User]:
    """Active members of ADMIN_GROUPS (told when a request has too few possible approvers)."""
    groups = set(settings.ADMIN_GROUPS)
    if not groups:
        return []
    users: QuerySet[User] = User.objects.filter(is_active=True)
    if connection.vendor == "postgresql":
        users = users.filter(directory_groups__has_any_keys=sorted(groups))
    return [u for u in users.order_by("pk") if set(u.directory_groups) & groups]


def source_identity_for(user: User) -> str:
    """The SourceIdentity issuance stamps on this user's sessions, so a revocation denies exactly
    that value. Raises ``IdentityNotExpressible`` when no session could carry one."""
    return session_name_for(user.email)
