"""What each mapping row reaches, expanded once: one row per (mapping row, account) it reaches.

A resolution reads these final rows by group (one indexed read, aggregated in SQL) instead of
expanding scopes in Python on every cold call. They are derived data: the database itself keeps
them in step, by triggers on the mapping and account tables (migration
``0024_entitlement_rows``), so every writer is covered (mapping applies, imports, drafts,
rollbacks, the demo seed, a shell session or a test factory) and a resolution right after a
change in the same transaction already sees it. The scope rule the triggers encode is
``federation.entitlements.scope.accounts_reached``; tests compare the two.

Roles and account_roles pointers are not copied here: a row carries ids, and the role's and the
account's current fields are looked up when an entitlement is built, so changing them needs no
rebuild.
"""

from __future__ import annotations

from django.db import models

from federation.models.catalog import Account, GroupMapping, LogicalRole


class EntitlementRow(models.Model):
    """One (group, account, role) a mapping row gives, with the row's access and longest grant.

    Written only by the database triggers; never by Python code. The resolution reads by
    group through ``entitlement_row_group_idx``, created by migration 0024 beside the triggers
    and not declared in Meta: on PostgreSQL it covers the columns read (INCLUDE), so the read
    comes from the index alone once the table is vacuumed; SQLite (the demo) has no covering
    indexes and gets a plain one.
    """

    # No database foreign keys: the triggers delete a row's expansion after the statement that
    # deletes the mapping row or the account, which a foreign key would refuse first.
    mapping = models.ForeignKey(
        GroupMapping, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    group = models.CharField(max_length=256)
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    role = models.ForeignKey(
        LogicalRole,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    access = models.CharField(max_length=16)
    max_grant = models.DurationField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.group} → role {self.role_id} in account {self.account_id} ({self.access})"
