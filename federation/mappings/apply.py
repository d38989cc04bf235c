"""Applying a document as a new mapping version, and rolling back to an earlier one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction

from federation.audit.chain import record_event
from federation.mappings.document import AccountRow, MappingDocument, MappingRow
from federation.mappings.errors import (
    MappingConflict,
    MappingError,
    MappingFileInvalid,
    RemovalRefused,
)
from federation.mappings.plan import Plan, _Diff, _plan
from federation.mappings.state import _Current, _load_current, get_version_document
from federation.models import (
    Account,
    AccountRole,
    BusinessUnit,
    GroupMapping,
    LogicalRole,
    MappingVersion,
    User,
    VersionSource,
)

Source = VersionSource

# pg_advisory_xact_lock key serialising applies; any constant no other lock in the project uses.
APPLY_LOCK_KEY = 0x0FED0A9B


# --- Applying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    version: int | None  # the new version's number; None when nothing was applied

    @property
    def changed(self) -> bool:
        return self.version is not None

    @property
    def message(self) -> str:
        if self.version is None:
            return "No changes"
        return f"Applied as mapping version {self.version}"


_BATCH = 2000


def _write(current: _Current, diff: _Diff) -> None:
    """Bring the tables to the document: deletes first, then creates/updates in FK order."""
    gm, ar, acc, roles, bus = (
        diff.mappings,
        diff.account_roles,
        diff.accounts,
        diff.roles,
        diff.business_units,
    )
    # Rows that go away; Django's collector applies each relation's on_delete (and raises
    # ProtectedError for a reference that appeared since the plan's check).
    doomed_mappings = [current.mapping_pk[r.key] for r in gm.removed] + current.stray_mapping_pks
    if doomed_mappings:
        GroupMapping.objects.filter(pk__in=doomed_mappings).delete()
    if ar.removed:
        AccountRole.objects.filter(
            pk__in=[current.account_role_pk[r.key] for r in ar.removed]
        ).delete()
    if acc.removed:
        Account.objects.filter(pk__in=[current.account_pk[r.key] for r in acc.removed]).delete()

    bu_pk = dict(current.bu_pk)
    created_bus = BusinessUnit.objects.bulk_create(
        [
            BusinessUnit(slug=r.slug, name=r.name, approver_groups=list(r.approver_groups))
            for r in bus.added
        ]
    )
    bu_pk.update({bu.slug: bu.pk for bu in created_bus})
    BusinessUnit.objects.bulk_update(
        [
            BusinessUnit(
                pk=bu_pk[new.slug],
                slug=new.slug,
                name=new.name,
                approver_groups=list(new.approver_groups),
            )
            for _, new in bus.changed
        ],
        ["name", "approver_groups"],
        batch_size=_BATCH,
    )

    role_pk = dict(current.role_pk)
    created_roles = LogicalRole.objects.bulk_create(
        [
            LogicalRole(
                name=r.name,
                description=r.description,
                privileged=r.privileged,
                max_session=r.max_session,
                policies=r.to_dict().get("policies", {}),
                require_mfa=r.require_mfa,
                max_auth_age=r.max_auth_age,
            )
            for r in roles.added
        ]
    )
    role_pk.update({role.name: role.pk for role in created_roles})
    LogicalRole.objects.bulk_update(
        [
            LogicalRole(
                pk=role_pk[new.name],
                name=new.name,
                description=new.description,
                privileged=new.privileged,
                max_session=new.max_session,
                policies=new.to_dict().get("policies", {}),
                require_mfa=new.require_mfa,
                max_auth_age=new.max_auth_age,
            )
            for _, new in roles.changed
        ],
        ["description", "privileged", "max_session", "policies", "require_mfa", "max_auth_age"],
        batch_size=_BATCH,
    )

    def account(row: AccountRow, pk: int | None = None) -> Account:
        return Account(
            pk=pk,
            account_id=row.account_id,
            alias=row.alias,
            business_unit_id=bu_pk[row.business_unit],
            environment=row.environment,
            approvals_required=row.approvals_required,
            approver_groups=list(row.approver_groups),
            region=row.region,
            canary=row.canary,
        )

    account_pk = dict(current.account_pk)
    renamed = [(old, new) for old, new in acc.changed if old.alias != new.alias]
    if renamed:
        # Aliases are unique and PostgreSQL checks that row by row: park renamed accounts on a
        # unique placeholder first, so swapping two aliases works.
        Account.objects.bulk_update(
            [
                Account(pk=account_pk[new.account_id], alias=f"~{account_pk[new.account_id]}")
                for _, new in renamed
            ],
            ["alias"],
            batch_size=_BATCH,
        )
    Account.objects.bulk_update(
        [account(new, account_pk[new.account_id]) for _, new in acc.changed],
        [
            "alias",
            "business_unit",
            "environment",
            "approvals_required",
            "approver_groups",
            "region",
            "canary",
        ],
        batch_size=_BATCH,
    )
    created_accounts = Account.objects.bulk_create(
        [account(r) for r in acc.added], batch_size=_BATCH
    )
    account_pk.update({a.account_id: a.pk for a in created_accounts})

    AccountRole.objects.bulk_update(
        [
            AccountRole(
                pk=current.account_role_pk[new.key],
                role_arn=new.role_arn,
                max_session=new.max_session,
            )
            for _, new in ar.changed
        ],
        ["role_arn", "max_session"],
        batch_size=_BATCH,
    )
    AccountRole.objects.bulk_create(
        [
            AccountRole(
                account_id=account_pk[r.account_id],
                role_id=role_pk[r.role],
                role_arn=r.role_arn,
                max_session=r.max_session,
            )
            for r in ar.added
        ],
        batch_size=_BATCH,
    )

    def mapping(row: MappingRow, pk: int | None = None) -> GroupMapping:
        written = GroupMapping(
            pk=pk,
            group=row.group,
            role_id=role_pk[row.role],
            business_unit_id=bu_pk[row.business_unit],
            environments=list(row.environments),
            accounts=list(row.accounts),
            access=row.access,
            max_grant=row.max_grant,
            approver_groups=list(row.approver_groups),
        )
        # bulk_create skips clean(); the row's rules are checked on exactly what is written.
        try:
            written.clean()
        except ValidationError as exc:
            raise MappingFileInvalid(
                MappingError(None, f"{row.label}: {field}", message)
                for field, messages in exc.message_dict.items()
                for message in messages
            ) from exc
        return written

    GroupMapping.objects.bulk_update(
        [mapping(new, current.mapping_pk[new.key]) for _, new in gm.changed],
        ["access", "max_grant", "approver_groups"],
        batch_size=_BATCH,
    )
    GroupMapping.objects.bulk_create([mapping(r) for r in gm.added], batch_size=_BATCH)

    if roles.removed:
        LogicalRole.objects.filter(pk__in=[current.role_pk[r.name] for r in roles.removed]).delete()
    if bus.removed:
        BusinessUnit.objects.filter(pk__in=[current.bu_pk[r.slug] for r in bus.removed]).delete()


def _lock_applies() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPLY_LOCK_KEY])
    # SQLite (demo) takes its database-wide write lock on the first write; the unique version
    # number refuses a second apply racing for the same number.


def _apply(
    document: MappingDocument,
    *,
    actor: User | str,
    source: Source,
    reason: str,
    base_version: int | None,
    now: datetime,
    rolled_back_to: int | None = None,
    emergency: bool = False,
) -> ApplyResult:
    if source not in Source.values:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(Source.values)}")
    actor_label = actor.label if isinstance(actor, User) else actor
    try:
        with transaction.atomic(durable=True):
            _lock_applies()
            current = _load_current()
            if base_version is not None and base_version != current.version:
                raise MappingConflict(
                    f"the mapping tables moved from version {base_version} to "
                    f"{current.version} since this plan was made; plan again"
                )
            plan, diff = _plan(document, current)
            if plan.blockers:
                raise RemovalRefused(plan.blockers)
            if plan.is_empty:
                return ApplyResult(plan, None)
            _write(current, diff)
            number = current.version + 1
            MappingVersion.objects.create(
                number=number,
                actor=actor_label[:320],
                source=source,
                reason=reason[:500],
                document=document.to_dict(),
                plan=plan.to_json(),
                created_at=now,
            )
            data: dict[str, Any] = {
                "version_before": current.version,
                "version_after": number,
                "source": source,
                "reason": reason,
                "counts": plan.counts,
                "rows": [row.to_json() for row in plan.rows],
            }
            if rolled_back_to is not None:
                data["rolled_back_to"] = rolled_back_to
            if emergency:
                # A sensitive change applied without a second admin: say so, and why it counted.
                data["emergency"] = True
                data["sensitive_because"] = list(plan.sensitive_because)
            record_event(
                "mappings.rollback" if source == Source.ROLLBACK else "mappings.apply",
                actor=actor,
                target=f"mapping version {number}",
                data=data,
                now=now,
            )
    except (models.ProtectedError, models.RestrictedError) as exc:
        # The plan checked references; this is a request or grant created since then.
        found = (
            exc.protected_objects
            if isinstance(exc, models.ProtectedError)
            else exc.restricted_objects
        )
        labels = sorted({str(obj) for obj in found})[:10]
        raise RemovalRefused(
            [f"rows became referenced while applying: {', '.join(labels)}"]
        ) from exc
    except IntegrityError as exc:
        raise MappingConflict(
            f"the database refused the change, nothing was applied: {exc}".strip()
        ) from exc
    return ApplyResult(plan, number)


def apply_document(
    document: MappingDocument,
    *,
    actor: User | str,
    source: Source,
    reason: str = "",
    base_version: int | None = None,
    now: datetime,
    emergency: bool = False,
) -> ApplyResult:
    """Make the tables equal to ``document``, atomically, as a new mapping version.

    Applies are serialised; with ``base_version`` the apply is refused (MappingConflict) unless
    the tables are still at that version. A document equal to the tables writes nothing and
    returns a result whose ``version`` is None ("No changes"). Otherwise one MappingVersion
    (number = previous + 1, the whole document, the plan) and one audit event are written in
    the same transaction. Raises RemovalRefused when a removed row is still referenced by access
    requests or grants; nothing is changed then. ``emergency`` marks the audit event of a
    sensitive change applied without a second admin (``import_mappings --emergency``).
    """
    return _apply(
        document,
        actor=actor,
        source=source,
        reason=reason,
        base_version=base_version,
        now=now,
        emergency=emergency,
    )


def rollback_to_version(
    number: int,
    *,
    actor: User | str,
    reason: str = "",
    base_version: int | None = None,
    now: datetime,
    emergency: bool = False,
) -> ApplyResult:
    """Restore the document of version ``number`` as a new version (source "rollback").

    To see what it would change first, plan ``get_version_document(number)``. Raises
    VersionNotFound, and whatever apply_document() raises.
    """
    document = get_version_document(number)
    why = f"rollback to version {number}" + (f": {reason}" if reason else "")
    return _apply(
        document,
        actor=actor,
        source=Source.ROLLBACK,
        reason=why,
        base_version=base_version,
        now=now,
        rolled_back_to=number,
        emergency=emergency,
    )
