"""Benchmark: parse, plan and apply a 10,000-row mapping file on PostgreSQL (issue 3, item 9).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fedaccess uv run python bench/mapping_import.py

Runs in a database of its own, ``<name from DATABASE_URL>_mapping_bench``, created, migrated
and dropped by this script (the audit log it writes is append-only, so a scratch database is the
only clean way to leave nothing behind). The file: 50 business units, 2,000 accounts, 10 roles,
10,000 rows (8,000 account-scoped), and 3,000 users holding 5 groups each for the plan's
who-gains/who-loses. Timed: parse+validate, plan and apply into empty tables, then the same with
~5% of the rows changed, then a rollback to the first version (its plan, computed here from the
stored version as ``rollback_mappings --dry-run`` does, and the rollback itself). Baseline in the
same run: a bare ``GroupMapping.objects.bulk_create`` of the same 10,000 rows. Target: every
plan and apply under 5 s. The last lines read ``target <name>: <measured> vs <target> met|missed``.
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

from benchdb import scratch_database

BUSINESS_UNITS = 50
ACCOUNTS_PER_UNIT = 40  # 2,000 accounts
GROUPS_PER_UNIT = 40  # 2,000 groups
ROWS_PER_GROUP = 5  # 10,000 rows
USERS = 3000
GROUPS_PER_USER = 5
ROLES = [
    "admin",
    "security",
    "operations",
    "network-eng",
    "database-eng",
    "cloud-eng",
    "release",
    "observability",
    "app-eng",
    "cost-mgmt",
]
ENVIRONMENTS = ["dev", "test", "prod"]
TARGET_SECONDS = 5.0  # each plan and each apply (issue 3, item 9)

T = TypeVar("T")


def account_id(unit: int, index: int) -> str:
    return f"{100000000000 + unit * 1000 + index:012d}"


def mapping_file(changed_share: float = 0.0, seed: int = 1) -> str:
    """The YAML text; with changed_share, that share of rows changes access or account."""
    rng = random.Random(seed)
    out = ["business_units:"]
    for unit in range(BUSINESS_UNITS):
        out.append(
            f"  - {{slug: bu{unit:02d}, name: Unit {unit}, approver_groups: [bu{unit:02d}-mgr]}}"
        )
    out.append("accounts:")
    for unit in range(BUSINESS_UNITS):
        for index in range(ACCOUNTS_PER_UNIT):
            env = ENVIRONMENTS[index % 3]
            out.append(
                f'  - {{id: "{account_id(unit, index)}", alias: bu{unit:02d}-{env}-{index:02d}, '
                f"business_unit: bu{unit:02d}, environment: {env}}}"
            )
    out.append("roles:")
    for role in ROLES:
        privileged = "true" if role in ("admin", "security") else "false"
        out.append(f"  - {{name: {role}, privileged: {privileged}, max_session_minutes: 60}}")
    out.append("mappings:")
    for unit in range(BUSINESS_UNITS):
        for group_index in range(GROUPS_PER_UNIT):
            group = f"aws-bu{unit:02d}-team{group_index:02d}"
            for row in range(ROWS_PER_GROUP):
                role = ROLES[(group_index + row) % len(ROLES)]  # distinct per group
                change = rng.random() < changed_share
                access = "eligible" if role in ("admin", "security") else "standing"
                if row < 4:
                    index = (group_index * 4 + row) % ACCOUNTS_PER_UNIT
                    if change and row % 2:
                        index = (index + 1) % ACCOUNTS_PER_UNIT  # a row moves account
                    scope = f'accounts: ["{account_id(unit, index)}"], '
                elif group_index % 2:
                    scope = "environments: [prod], "
                else:
                    scope = ""
                if change and not (row < 4 and row % 2):
                    access = "standing" if access == "eligible" else "eligible"  # access flips
                grant = ", max_grant_minutes: 120" if access == "eligible" else ""
                out.append(
                    f"  - {{group: {group}, role: {role}, business_unit: bu{unit:02d}, "
                    f"{scope}access: {access}{grant}}}"
                )
    return "\n".join(out) + "\n"


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_of(runs: int, fn: Callable[[], T]) -> tuple[float, T]:
    times, result = [], None
    for _ in range(runs):
        elapsed, result = timed(fn)
        times.append(elapsed)
    assert result is not None
    return statistics.median(times), result


def create_users(groups: list[str]) -> None:
    from federation.models import User

    rng = random.Random(7)
    User.objects.bulk_create(
        [
            User(
                username=f"bench-user-{n}",
                email=f"bench-user-{n}@corp.example",
                directory_groups=rng.sample(groups, GROUPS_PER_USER),
            )
            for n in range(USERS)
        ],
        batch_size=1000,
    )


class _Rollback(Exception):
    pass


def baseline_bulk_create(document: Any) -> float:
    """A bare bulk_create of the same rows, inside a transaction rolled back afterwards."""
    from django.db import transaction

    from federation.models import BusinessUnit, GroupMapping, LogicalRole

    elapsed = 0.0
    try:
        with transaction.atomic():
            units = BusinessUnit.objects.bulk_create(
                [BusinessUnit(slug=u.slug, name=u.name) for u in document.business_units]
            )
            roles = LogicalRole.objects.bulk_create(
                [LogicalRole(name=r.name, max_session=r.max_session) for r in document.roles]
            )
            unit_pk = {u.slug: u.pk for u in units}
            role_pk = {r.name: r.pk for r in roles}
            rows = [
                GroupMapping(
                    group=m.group,
                    role_id=role_pk[m.role],
                    business_unit_id=unit_pk[m.business_unit],
                    environments=list(m.environments),
                    accounts=list(m.accounts),
                    access=m.access,
                    max_grant=m.max_grant,
                    approver_groups=list(m.approver_groups),
                )
                for m in document.mappings
            ]
            elapsed, _ = timed(lambda: GroupMapping.objects.bulk_create(rows, batch_size=2000))
            raise _Rollback
    except _Rollback:
        pass
    return elapsed


def main() -> None:
    # DEBUG stays off unless asked for, as before (benchdb's default is on).
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    scratch = scratch_database("bench/mapping_import.py", "mapping_bench")
    scratch.recreate()
    try:
        run()
    finally:
        scratch.drop()


def run() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    settings.DEBUG = False  # DEBUG keeps every SQL string in memory, which skews the timings
    call_command("migrate", verbosity=0)

    from federation.mappings import (
        apply_document,
        get_version_document,
        parse_document,
        plan_document,
        rollback_to_version,
    )

    first_text = mapping_file()
    second_text = mapping_file(changed_share=0.05)
    print(
        f"mapping file: {BUSINESS_UNITS} business units, "
        f"{BUSINESS_UNITS * ACCOUNTS_PER_UNIT} accounts, {len(ROLES)} roles, "
        f"{BUSINESS_UNITS * GROUPS_PER_UNIT * ROWS_PER_GROUP} rows "
        f"({len(first_text) / 1e6:.1f} MB); {USERS} users with {GROUPS_PER_USER} groups each"
    )

    parse_s, document = median_of(3, lambda: parse_document(first_text))
    groups = sorted({m.group for m in document.mappings})
    create_users(groups)
    baseline_s = statistics.median(baseline_bulk_create(document) for _ in range(3))

    plan1_s, plan1 = median_of(3, lambda: plan_document(document))
    apply1_s, result1 = timed(
        lambda: apply_document(
            document, actor="bench", source="import", reason="first", now=timezone.now()
        )
    )
    assert result1.version == 1

    parse2_s, changed = median_of(3, lambda: parse_document(second_text))
    plan2_s, plan2 = median_of(3, lambda: plan_document(changed))
    apply2_s, result2 = timed(
        lambda: apply_document(
            changed, actor="bench", source="import", reason="~5% changed", now=timezone.now()
        )
    )
    assert result2.version == 2

    plan3_s, plan3 = median_of(3, lambda: plan_document(get_version_document(1)))
    apply3_s, result3 = timed(
        lambda: rollback_to_version(1, actor="bench", reason="undo", now=timezone.now())
    )
    assert result3.version == 3

    def size(plan: Any) -> str:
        counts = plan.counts["mapping"]
        return (
            f"rows +{counts['add']} -{counts['remove']} ~{counts['change']}, "
            f"{len(plan.groups)} groups and {len(plan.users)} users affected"
        )

    width = 44
    print()
    print(f"{'step (PostgreSQL, median of 3 where repeated)':<{width}} seconds")
    print(f"{'baseline: bare GroupMapping bulk_create':<{width}} {baseline_s:7.3f}")
    print(f"{'parse + validate (10,000 rows)':<{width}} {parse_s:7.3f}")
    print(f"{'plan into empty tables':<{width}} {plan1_s:7.3f}   {size(plan1)}")
    print(
        f"{'apply into empty tables':<{width}} {apply1_s:7.3f}   version {result1.version}, "
        f"{apply1_s / baseline_s:.1f}x the baseline"
    )
    print(f"{'parse + validate (~5% changed)':<{width}} {parse2_s:7.3f}")
    print(f"{'plan, ~5% changed':<{width}} {plan2_s:7.3f}   {size(plan2)}")
    print(f"{'apply, ~5% changed':<{width}} {apply2_s:7.3f}   version {result2.version}")
    print(f"{'plan of a rollback to version 1':<{width}} {plan3_s:7.3f}   {size(plan3)}")
    print(f"{'rollback to version 1':<{width}} {apply3_s:7.3f}   version {result3.version}")
    print()
    targets = [
        ("plan into empty tables", plan1_s),
        ("apply into empty tables", apply1_s),
        ("plan, ~5% changed", plan2_s),
        ("apply, ~5% changed", apply2_s),
        ("rollback plan", plan3_s),
        ("rollback apply", apply3_s),
    ]
    for name, measured in targets:
        verdict = "met" if measured < TARGET_SECONDS else "missed"
        print(f"target {name}: {measured:.2f} s vs {TARGET_SECONDS:.0f} s {verdict}")


if __name__ == "__main__":
    main()
