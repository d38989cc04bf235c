"""The sample mapping file (SPEC §3.3) the tests build on: one copy, with the rows each test needs.

Two business units (pb, dw), three accounts (pb-dev, pb-prod, dw-dev) and two roles (cloud-eng,
admin [privileged]); the mapping rows are the caller's, one flow-style YAML item each. Line 1 of
the text is ``business_units:``, so tests can name the line at fault. For example, the browser
journeys' tables are::

    mapping_yaml(
        [PB_CLOUD_ENG, DW_CLOUD_ENG, PB_ADMIN.replace("240", "120")],
        roles=(*ROLES, "{name: observability, max_session_minutes: 60}"),
    )
"""

from __future__ import annotations

from collections.abc import Iterable

BUSINESS_UNITS = (
    "{slug: pb, name: Personal Banking, approver_groups: [aws-pb-managers]}",
    "{slug: dw, name: Data Warehouse, approver_groups: [aws-dw-managers]}",
)
ACCOUNTS = (
    '{id: "111111111111", alias: pb-dev, business_unit: pb, environment: dev}',
    '{id: "222222222222", alias: pb-prod, business_unit: pb, environment: prod}',
    '{id: "333333333333", alias: dw-dev, business_unit: dw, environment: dev}',
)
ROLES = (
    "{name: cloud-eng, max_session_minutes: 60}",
    "{name: admin, privileged: true, max_session_minutes: 60}",
)

PB_CLOUD_ENG = "{group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb, access: standing}"
PB_CLOUD_ENG_DEV = (
    "{group: aws-pb-cloud-eng, role: cloud-eng, business_unit: pb, environments: [dev], "
    "access: standing}"
)
PB_ADMIN = (
    "{group: aws-pb-admin, role: admin, business_unit: pb, environments: [prod], "
    "access: eligible, max_grant_minutes: 240}"
)
PB_OPS_DEV = (
    "{group: aws-pb-ops, role: cloud-eng, business_unit: pb, environments: [dev], "
    "access: eligible, max_grant_minutes: 120, approver_groups: [aws-pb-leads]}"
)
DW_CLOUD_ENG = "{group: aws-dw-cloud-eng, role: cloud-eng, business_unit: dw, access: standing}"
SAMPLE_MAPPINGS = (PB_CLOUD_ENG, PB_ADMIN, DW_CLOUD_ENG)


def mapping_yaml(
    mappings: Iterable[str] = SAMPLE_MAPPINGS,
    *,
    roles: Iterable[str] = ROLES,
    account_roles: Iterable[str] = (),
    business_units: Iterable[str] = BUSINESS_UNITS,
    accounts: Iterable[str] = ACCOUNTS,
) -> str:
    """The sample file with these mapping rows (and roles, and account_roles if any)."""
    sections = [
        ("business_units", tuple(business_units)),
        ("accounts", tuple(accounts)),
        ("roles", tuple(roles)),
        ("mappings", tuple(mappings)),
    ]
    if account_roles := tuple(account_roles):
        sections.append(("account_roles", account_roles))
    lines: list[str] = []
    for name, items in sections:
        lines.append(f"{name}:" if items else f"{name}: []")
        lines.extend(f"  - {item}" for item in items)
    return "\n".join(lines) + "\n"
