"""What a leaver or a mover loses, at once (SPEC §4 Directory sync and leavers; docs/scim.md).

Called by ``service.py`` inside the SCIM request's transaction, with the person's identity row
locked (issuance locks it too, so an issuance racing a leaver either commits first, and the IAM
deny below covers its session, or sees the identity deactivated). Everything but IAM happens in
that transaction: portal sessions end, API tokens are revoked, pending requests are cancelled,
grants are revoked. IAM cannot join a database transaction, so each deny owed is an
``IdentityDeny`` row queued through the outbox after commit and retried until IAM accepts it
(``denies.py``). Every step is audited with the SCIM request that caused it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from importlib import import_module

from django.conf import settings

from access_requests import tasks
from access_requests.services.effects import enqueue
from access_requests.services.grants import revoke_grants_of
from access_requests.services.workflow import cancel_pending_of
from federation.audit.chain import record_event
from federation.entitlements.resolve import resolve_entitlements
from federation.models import (
    MAX_SESSION,
    ApiToken,
    IdentityDeny,
    IdentityProvider,
    Leaver,
    LeaverKind,
    PortalSession,
    ScimRequest,
    SessionIssuance,
    User,
)

logger = logging.getLogger(__name__)


def scim_actor(idp: IdentityProvider) -> str:
    return f"scim:{idp.slug}"


def lost_entitlements(
    user: User, before: list[str], after: list[str], *, now: datetime
) -> set[tuple[str, str]]:
    """The (account id, role) pairs ``before``'s groups reached and ``after``'s do not."""
    if set(before) <= set(after):
        return set()
    had = {e.key for e in resolve_entitlements(before, now=now, user_id=user.pk)}
    keeps = {e.key for e in resolve_entitlements(after, now=now, user_id=user.pk)}
    return had - keeps


def process_leaver(
    user: User,
    *,
    idp: IdentityProvider,
    kind: LeaverKind,
    scim_request: ScimRequest | None,
    now: datetime,
) -> Leaver:
    """End everything ``user`` (locked, already marked inactive by the caller) holds."""
    actor = scim_actor(idp)
    leaver = Leaver.objects.create(idp=idp, user=user, scim_request=scim_request, kind=kind, at=now)
    cause = _cause(scim_request, kind)
    leaver.sessions_ended = _end_portal_sessions(user, actor=actor, cause=cause, now=now)
    leaver.tokens_revoked = _revoke_api_tokens(user, actor=actor, cause=cause, now=now)
    reason = f"directory: {kind.label} (SCIM request #{cause['scim_request']})"
    leaver.requests_cancelled = len(cancel_pending_of(user, actor=actor, now=now, comment=reason))
    revoked = revoke_grants_of(user, actor=actor, now=now, reason=reason)
    leaver.grants_revoked = len(revoked)
    denied = _deny_issued_sessions(leaver, keys=None, now=now)
    leaver.save()
    _record(leaver, actor=actor, cause=cause, denied=denied, now=now)
    return leaver


def process_mover(
    user: User,
    lost: set[tuple[str, str]],
    *,
    idp: IdentityProvider,
    scim_request: ScimRequest | None,
    now: datetime,
) -> Leaver:
    """``user`` lost ``lost`` through a group change: refuse it from now on (issuance resolves
    the groups again), revoke the grants on it, deny the sessions already issued for it."""
    actor = scim_actor(idp)
    leaver = Leaver.objects.create(
        idp=idp,
        user=user,
        scim_request=scim_request,
        kind=LeaverKind.MOVED,
        at=now,
        lost=sorted(f"{account}/{role}" for account, role in lost),
    )
    cause = _cause(scim_request, LeaverKind.MOVED)
    reason = f"directory: lost groups (SCIM request #{cause['scim_request']})"
    leaver.grants_revoked = len(
        revoke_grants_of(user, actor=actor, now=now, reason=reason, keys=lost)
    )
    denied = _deny_issued_sessions(leaver, keys=lost, now=now)
    leaver.save()
    _record(leaver, actor=actor, cause=cause, denied=denied, now=now)
    return leaver


def _cause(scim_request: ScimRequest | None, kind: LeaverKind) -> dict[str, object]:
    return {
        "scim_request": scim_request.pk if scim_request is not None else None,
        "cause": LeaverKind(kind).value,
    }


def _end_portal_sessions(user: User, *, actor: str, cause: dict[str, object], now: datetime) -> int:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    keys = list(
        PortalSession.objects.select_for_update()
        .filter(user=user)
        .values_list("session_key", flat=True)
    )
    ended = 0
    for key in keys:
        session = store(session_key=key)
        try:
            if session.exists(key):
                ended += 1
            session.delete(key)
        except Exception:  # sessions in Redis and Redis down: see below
            # The leaver is cut off all the same: the user is inactive, and Django's auth
            # backend signs nobody in from a session of an inactive user (whatever a store
            # brings back later). Say so, and end the rest.
            logger.error("session store unreachable: a leaver's portal session was not deleted")
    PortalSession.objects.filter(user=user).delete()
    if keys:
        record_event(
            "directory.sessions_ended",
            actor=actor,
            target=f"user:{user.pk}",
            now=now,
            data={**cause, "user": user.label, "sessions": ended},
        )
    return ended


def _revoke_api_tokens(user: User, *, actor: str, cause: dict[str, object], now: datetime) -> int:
    live = ApiToken.objects.select_for_update().filter(
        user=user, revoked_at__isnull=True, expires_at__gt=now
    )
    prefixes = list(live.values_list("prefix", flat=True))
    live.update(revoked_at=now)
    for prefix in prefixes:
        record_event(
            "api_token.revoked",
            actor=actor,
            target=f"api-token:{prefix}",
            now=now,
            data={**cause, "user": user.label},
        )
    return len(prefixes)


def _deny_issued_sessions(
    leaver: Leaver, *, keys: set[tuple[str, str]] | None, now: datetime
) -> list[IdentityDeny]:
    """One deny per (role, SourceIdentity) the person's sessions could still be alive under:
    every session issued within the longest session length that has not expired (the per-person
    revocation policy of ``federation.aws.iam``), limited to ``keys`` for a mover."""
    issued = (
        SessionIssuance.objects.filter(
            user=leaver.user, issued_at__gte=now - MAX_SESSION, expires_at__gt=now
        )
        .values_list("account_id", "role_id", "role_arn", "source_identity")
        .distinct()
    )
    owed: dict[tuple[str, str], str] = {}
    for account_id, role, role_arn, source_identity in issued:
        # The issuance keys its account and role by AWS account id and role name.
        if keys is not None and (str(account_id), str(role)) not in keys:
            continue
        owed[(role_arn, source_identity)] = str(account_id)
    denies = IdentityDeny.objects.bulk_create(
        IdentityDeny(
            leaver=leaver,
            role_arn=role_arn,
            account_id=account_id,
            source_identity=source_identity,
            issued_before=now,
            created_at=now,
        )
        for (role_arn, source_identity), account_id in sorted(owed.items())
    )
    for deny in denies:
        enqueue(tasks.apply_identity_deny, deny.pk)
    return denies


def _record(
    leaver: Leaver,
    *,
    actor: str,
    cause: dict[str, object],
    denied: list[IdentityDeny],
    now: datetime,
) -> None:
    record_event(
        f"directory.{leaver.kind}",
        actor=actor,
        target=f"user:{leaver.user_id}",
        now=now,
        data={
            **cause,
            "leaver": leaver.pk,
            "user": leaver.user.label,
            "subject": leaver.user.subject,
            "lost": leaver.lost,
            "sessions_ended": leaver.sessions_ended,
            "tokens_revoked": leaver.tokens_revoked,
            "requests_cancelled": leaver.requests_cancelled,
            "grants_revoked": leaver.grants_revoked,
            "iam_denies_owed": [
                {"role_arn": d.role_arn, "source_identity": d.source_identity} for d in denied
            ],
        },
    )
