"""Benchmark: an initial SCIM sync as Okta pushes it, and one leaver end to end (issue 14).

Initial sync: ``SCIM_BENCH_USERS`` users (default 10,000), one POST each, then
``SCIM_BENCH_GROUPS`` groups (default 500), each created empty and filled by PATCHes of at most
1,000 members, as Okta's group push sends them (every user in 5 groups: 20 groups of 1,000
members and the rest smaller). Every request goes through the whole service in-process (Django's
test client: middleware, token, ScimRequest log, scim2-models, audit events), on PostgreSQL.
Floor: bare ``bulk_create`` inserts of the same rows (identities, people, SCIM users, groups,
memberships), measured in the same run.

Leaver: one person with a portal session, two API tokens, a pending request, an active grant
and sessions issued on three roles, deactivated by Okta's PATCH; timed from the request to every
effect recorded, the IAM denies included (tasks run eagerly against a moto IAM server over
HTTP). Floor: the same rows written bare (one UPDATE or INSERT each) in one transaction.

Runs in its own database ``<DATABASE_URL name>_bench_scim``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/scim.py`` (``SCIM_BENCH_SCALE=0.1`` for a
quick run at a tenth of the sizes).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from datetime import timedelta
from typing import Any

from benchdb import scratch_database

SCRATCH = scratch_database("bench/scim.py", "bench_scim")
os.environ.pop("CELERY_BROKER_URL", None)  # effect tasks (the IAM denies) run eagerly
os.environ["LOG_LEVEL"] = "ERROR"
# As in production with a broker: audit events are placed in the chain by the sequencer, after
# commit, not by each writer under the chain lock (docs/audit.md; bench/audit.py measures that).
os.environ.setdefault("AUDIT_SEQUENCING", "batched")

SCALE = float(os.environ.get("SCIM_BENCH_SCALE", "1"))
USERS = int(os.environ.get("SCIM_BENCH_USERS", str(int(10_000 * SCALE))))
GROUPS = int(os.environ.get("SCIM_BENCH_GROUPS", str(int(500 * SCALE))))
GROUPS_PER_USER = 5
PATCH_MAX = 1000
# Targets: the service within this factor of the bare-insert floor, and the leaver's latency.
TARGET_SYNC_VS_FLOOR = 100.0
TARGET_LEAVER_SECONDS = 2.0
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


def memberships(rng: random.Random) -> list[list[int]]:
    """Members per group: 20 big groups (up to 1,000), the rest share what is left."""
    big = min(20, GROUPS)
    groups: list[set[int]] = [set() for _ in range(GROUPS)]
    big_size = min(PATCH_MAX, USERS)
    for g in range(big):
        groups[g].update(rng.sample(range(USERS), big_size))
    wanted = USERS * GROUPS_PER_USER - big * big_size
    others = list(range(big, GROUPS)) or list(range(GROUPS))
    for _ in range(max(wanted, 0)):
        groups[rng.choice(others)].add(rng.randrange(USERS))
    return [sorted(g) for g in groups]


def main() -> None:
    SCRATCH.recreate()
    try:
        run()
    finally:
        SCRATCH.drop()


def run() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from moto.server import ThreadedMotoServer

    from tests.aws import free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        sync_seconds, requests, floor_seconds, rows = initial_sync()
        leaver, leaver_floor, effects = one_leaver()
    finally:
        moto.stop()
    report(sync_seconds, requests, floor_seconds, rows, leaver, leaver_floor, effects)


def _client(token: str) -> Any:
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")


def _send(client: Any, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.generic(
        method, f"/scim/v2/{path}", json.dumps(body), content_type="application/scim+json"
    )
    if response.status_code >= 300:
        raise SystemExit(f"{method} {path}: {response.status_code} {response.content[:300]!r}")
    return json.loads(response.content)  # type: ignore[no-any-return]


def initial_sync() -> tuple[float, int, float, int]:
    from django.utils import timezone

    from federation.directory.tokens import create_scim_token
    from federation.models import (
        Access,
        Account,
        BusinessUnit,
        DirectoryGroup,
        DirectoryMembership,
        DirectoryUser,
        GroupMapping,
        IdentityProvider,
        LogicalRole,
        Person,
        User,
    )

    bu = BusinessUnit.objects.create(slug="pb", name="Personal Banking")
    Account.objects.create(
        account_id="111111111111", alias="pb-dev", business_unit=bu, environment="dev"
    )
    role = LogicalRole.objects.create(name="cloud-eng")
    for g in range(0, GROUPS, 10):  # every tenth group is mapped, so movers cost something
        GroupMapping.objects.create(
            group=f"okta-group-{g}", role=role, business_unit=bu, access=Access.STANDING
        )
    idp = IdentityProvider.objects.create(slug="okta", protocol="saml", entity_id="https://okta/")
    client = _client(create_scim_token(idp, actor="bench", now=timezone.now()).plaintext)
    rng = random.Random(14)
    groups = memberships(rng)

    requests = 0
    started = time.perf_counter()
    ids: list[str] = []
    for n in range(USERS):
        email = f"user{n}@corp.example"
        created = _send(
            client,
            "POST",
            "Users",
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": email,
                "externalId": f"00u{n:08d}",
                "name": {"givenName": f"User{n}", "familyName": "Bench"},
                "emails": [{"primary": True, "value": email, "type": "work"}],
                "active": True,
            },
        )
        ids.append(created["id"])
        requests += 1
    users_done = time.perf_counter()
    for g, members in enumerate(groups):
        group = _send(
            client,
            "POST",
            "Groups",
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": f"okta-group-{g}",
            },
        )
        requests += 1
        for start in range(0, len(members), PATCH_MAX):
            chunk = members[start : start + PATCH_MAX]
            _send(
                client,
                "PATCH",
                f"Groups/{group['id']}",
                {
                    "schemas": [PATCH_SCHEMA],
                    "Operations": [
                        {
                            "op": "add",
                            "path": "members",
                            "value": [{"value": ids[i]} for i in chunk],
                        }
                    ],
                },
            )
            requests += 1
    sync_seconds = time.perf_counter() - started
    group_seconds = sync_seconds - (users_done - started)
    print(f"users: {USERS} POSTs in {users_done - started:.1f} s; groups: {GROUPS} groups, "
          f"{sum(map(len, groups))} memberships in {group_seconds:.1f} s")  # fmt: skip

    # The floor: the same rows, bare, for another IdP (so no constraint collides).
    bare = IdentityProvider.objects.create(slug="bare", protocol="saml", entity_id="https://bare/")
    now = timezone.now()
    floor_started = time.perf_counter()
    people = Person.objects.bulk_create([Person(created_at=now) for _ in range(USERS)])
    users = User.objects.bulk_create(
        [
            User(
                username=f"bare-{n}",
                idp=bare,
                subject=f"user{n}@corp.example",
                email=f"user{n}@corp.example",
                person=people[n],
                directory_groups=[],
            )
            for n in range(USERS)
        ]
    )
    entries = DirectoryUser.objects.bulk_create(
        [
            DirectoryUser(
                idp=bare,
                user=users[n],
                user_name=f"user{n}@corp.example",
                external_id=f"00u{n:08d}",
                attributes={"name": {"givenName": f"User{n}", "familyName": "Bench"}},
                created_at=now,
                updated_at=now,
            )
            for n in range(USERS)
        ]
    )
    bare_groups = DirectoryGroup.objects.bulk_create(
        [
            DirectoryGroup(idp=bare, display_name=f"okta-group-{g}", created_at=now, updated_at=now)
            for g in range(GROUPS)
        ]
    )
    DirectoryMembership.objects.bulk_create(
        [
            DirectoryMembership(group=bare_groups[g], member=entries[i])
            for g, members in enumerate(groups)
            for i in members
        ],
        batch_size=5000,
    )
    floor_seconds = time.perf_counter() - floor_started
    rows = 4 * USERS + GROUPS + sum(map(len, groups))
    return sync_seconds, requests, floor_seconds, rows


def one_leaver() -> tuple[float, float, dict[str, int]]:
    import boto3
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction
    from django.utils import timezone

    from access_requests.models import AccessRequest, Grant
    from federation.issuance.tokens import create_api_token
    from federation.models import (
        Account,
        ApiToken,
        AuditEvent,
        IdentityDeny,
        Leaver,
        LogicalRole,
        PortalSession,
        ScimToken,
        SessionIssuance,
        User,
    )

    iam = boto3.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    roles = ["cloud-eng", "ops", "admin"]
    for name in roles:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        LogicalRole.objects.get_or_create(name=name)
    account = Account.objects.get(account_id="111111111111")

    def prepare(n: int) -> tuple[User, str]:
        user = User.objects.get(idp__slug="okta", subject=f"user{n}@corp.example")
        now = timezone.now()
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session.create()
        PortalSession.objects.create(user=user, session_key=session.session_key, created_at=now)
        for _ in range(2):
            create_api_token(user, name="bench", lifetime=timedelta(days=7), now=now, ip=None)
        request = AccessRequest.objects.create(
            requester=user, account=account, role=LogicalRole.objects.get(name="admin"),
            justification="bench", duration=timedelta(hours=1), decide_by=now + timedelta(hours=1),
        )  # fmt: skip
        granted = AccessRequest.objects.create(
            requester=user, account=account, role=LogicalRole.objects.get(name="ops"),
            justification="bench", duration=timedelta(hours=1),
            decide_by=now + timedelta(hours=1), state=AccessRequest.State.APPROVED,
        )  # fmt: skip
        Grant.objects.create(
            request=granted, user=user, account=account, role=granted.role, starts_at=now,
            ends_at=now + timedelta(hours=1), role_arn="arn:aws:iam::111111111111:role/ops",
            source_identity=user.email,
        )  # fmt: skip
        for name in roles:
            SessionIssuance.objects.create(
                user=user, account=account, role=LogicalRole.objects.get(name=name),
                kind="cli", access="standing", role_arn=f"arn:aws:iam::111111111111:role/{name}",
                session_name=user.email, source_identity=user.email, region="us-east-1",
                endpoint="bench", duration=timedelta(hours=1), issued_at=now,
                expires_at=now + timedelta(hours=1),
            )  # fmt: skip
        assert request.pk
        return user, str(user.directory_entry.scim_id)

    from federation.directory.tokens import create_scim_token

    token = create_scim_token(
        ScimToken.objects.get().idp, actor="bench", now=timezone.now()
    ).plaintext
    client = _client(token)
    latencies = []
    for n in range(5):  # five leavers; the median is reported
        user, scim_id = prepare(n)
        started = time.perf_counter()
        _send(
            client,
            "PATCH",
            f"Users/{scim_id}",
            {
                "schemas": [PATCH_SCHEMA],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
        )
        latencies.append(time.perf_counter() - started)
        assert IdentityDeny.objects.filter(leaver__user=user, applied_at__isnull=True).count() == 0
    leaver = Leaver.objects.order_by("-pk").first()
    assert leaver is not None
    effects = {
        "sessions ended": leaver.sessions_ended,
        "API tokens revoked": leaver.tokens_revoked,
        "requests cancelled": leaver.requests_cancelled,
        "grants revoked": leaver.grants_revoked,
        "IAM denies applied": IdentityDeny.objects.filter(
            leaver=leaver, applied_at__isnull=False
        ).count(),
        "audit events": AuditEvent.objects.filter(
            data__scim_request=leaver.scim_request_id
        ).count(),
    }

    # The floor: the same rows written bare, one statement each, in one transaction.
    floor = []
    for n in range(5, 10):
        user, _ = prepare(n)
        now = timezone.now()
        started = time.perf_counter()
        with transaction.atomic():
            User.objects.filter(pk=user.pk).update(is_active=False)
            keys = list(
                PortalSession.objects.filter(user=user).values_list("session_key", flat=True)
            )
            SessionStore().delete(keys[0])
            PortalSession.objects.filter(user=user).delete()
            ApiToken.objects.filter(user=user).update(revoked_at=now)
            AccessRequest.objects.filter(requester=user, state="pending").update(state="cancelled")
            Grant.objects.filter(user=user).update(state="revoked", revoked_at=now)
            bare = Leaver.objects.create(idp=user.idp, user=user, kind="deactivated", at=now)
            IdentityDeny.objects.bulk_create(
                IdentityDeny(leaver=bare, role_arn=f"arn:aws:iam::111111111111:role/{r}",
                             account_id="111111111111", source_identity=user.email,
                             issued_before=now, created_at=now) for r in roles
            )  # fmt: skip
        floor.append(time.perf_counter() - started)
    return statistics.median(latencies), statistics.median(floor), effects


def report(
    sync_seconds: float,
    requests: int,
    floor_seconds: float,
    rows: int,
    leaver: float,
    leaver_floor: float,
    effects: dict[str, int],
) -> None:
    print(f"\ninitial sync, {USERS} users and {GROUPS} groups as Okta pushes them, PostgreSQL\n")
    rate, users = requests / sync_seconds, USERS / sync_seconds
    print(f"service: {requests} SCIM requests in {sync_seconds:.1f} s = "
          f"{rate:.0f} requests/s, {users:.0f} users/s overall")  # fmt: skip
    print(f"floor (bare inserts of the same {rows} rows): {floor_seconds:.2f} s")
    ratio = sync_seconds / floor_seconds
    print(f"service vs floor: {ratio:.0f}x\n")
    print(f"leaver end to end (median of 5; SCIM PATCH to every effect recorded, IAM included): "
          f"{leaver * 1000:.0f} ms")  # fmt: skip
    print(f"floor (the same rows written bare, one transaction): {leaver_floor * 1000:.1f} ms")
    print("effects of the last leaver: " + ", ".join(f"{n} {k}" for k, n in effects.items()))
    print()
    print(f"target sync_vs_floor: {ratio:.0f}x vs <= {TARGET_SYNC_VS_FLOOR:.0f}x "
          f"{'met' if ratio <= TARGET_SYNC_VS_FLOOR else 'missed'}")  # fmt: skip
    print(f"target leaver_latency: {leaver:.2f}s vs <= {TARGET_LEAVER_SECONDS:.1f}s "
          f"{'met' if leaver <= TARGET_LEAVER_SECONDS else 'missed'}")  # fmt: skip


if __name__ == "__main__":
    main()
