"""Mapping documents (SPEC §3.3): parse, validate, plan, apply, export and roll back.

A mapping document is the complete desired state of the five mapping tables: business units,
accounts, logical roles, account roles and group mappings. Anything not in it is removed.

Every change to those tables goes through ``apply_document()``, which writes a new
``MappingVersion`` in the same transaction: that number is what invalidates the per-process
entitlement memo (``federation/entitlements.py``), and what rollback restores from.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

import yaml
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Max
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from .audit import record_event
from .models import (
    ACCOUNT_ID_RE,
    SLUG_RE,
    Access,
    Account,
    AccountRole,
    BusinessUnit,
    GroupMapping,
    LogicalRole,
    MappingVersion,
    User,
)

SECTIONS = ("business_units", "accounts", "roles", "account_roles", "mappings")
REQUIRED_SECTIONS = ("business_units", "accounts", "roles", "mappings")
SOURCES = ("import", "rollback", "seed", "ui")
Source = Literal["import", "rollback", "seed", "ui"]

DEFAULT_REGION = "us-east-1"
DEFAULT_SESSION_MINUTES = 60
DEFAULT_MAX_GRANT_MINUTES = 60
# STS DurationSeconds bounds (models.MIN_SESSION / MAX_SESSION) in minutes.
SESSION_MINUTES_RANGE = (15, 720)
# Eligible access is time-bound by design: a day is the longest grant a row may allow.
MAX_GRANT_MINUTES_RANGE = (15, 1440)
# A bound on parser work for hostile or mistaken input; 10,000 rows are about 1.5 MB.
MAX_DOCUMENT_CHARS = 32 * 1024 * 1024
# pg_advisory_xact_lock key serialising applies; any constant no other lock in the project uses.
APPLY_LOCK_KEY = 0x0FED0A9B
# A command prints at most this many faults (MappingFileInvalid.errors keeps them all).
SHOWN_ERRORS = 100

ENV_ORDER = {"dev": 0, "test": 1, "prod": 2}
_ACCOUNT_ID = re.compile(ACCOUNT_ID_RE)
_SLUG = re.compile(SLUG_RE)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}):role/[\w+=,.@/-]{1,512}$")


# --- Errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingError:
    """One fault in a mapping document: where (line, path) and what is wrong."""

    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        if self.path:
            where.append(self.path)
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "path": self.path, "message": self.message}


class MappingFileInvalid(Exception):
    """The document is not valid; ``errors`` lists every fault found, in line order."""

    def __init__(self, errors: Iterable[MappingError]) -> None:
        unique = dict.fromkeys(errors)
        self.errors: tuple[MappingError, ...] = tuple(
            sorted(unique, key=lambda e: (e.line or 0, e.path, e.message))
        )
        count = len(self.errors)
        lines = [f"  {error}" for error in self.errors[:SHOWN_ERRORS]]
        if count > SHOWN_ERRORS:
            lines.append(f"  ... and {count - SHOWN_ERRORS} more")
        message = "\n".join(lines)
        super().__init__(f"mapping file invalid ({count} error{'s' * (count != 1)}):\n{message}")


class MappingConflict(Exception):
    """The tables moved under the caller (another apply won) or the database refused the change."""


class RemovalRefused(Exception):
    """The document removes rows that access requests or grants still reference."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "refusing to remove rows that are still referenced (nothing was changed):\n"
            + "\n".join(f"  {problem}" for problem in self.problems)
        )


class VersionNotFound(Exception):
    """No mapping version has that number."""


# --- The document -----------------------------------------------------------------------------


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class BusinessUnitRow:
    slug: str
    name: str
    approver_groups: tuple[str, ...] = ()

    kind = "business_unit"

    @property
    def key(self) -> str:
        return self.slug

    @property
    def label(self) -> str:
        return f"business unit {self.slug}"

    def to_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "name": self.name, "approver_groups": list(self.approver_groups)}


@dataclass(frozen=True, slots=True)
class AccountRow:
    account_id: str
    alias: str
    business_unit: str
    environment: str
    approvals_required: int
    approver_groups: tuple[str, ...] = ()
    region: str = DEFAULT_REGION

    kind = "account"

    @property
    def key(self) -> str:
        return self.account_id

    @property
    def label(self) -> str:
        return f"account {self.account_id} ({self.alias})"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.account_id,
            "alias": self.alias,
            "business_unit": self.business_unit,
            "environment": self.environment,
            "approvals_required": self.approvals_required,
        }
        if self.approver_groups:
            item["approver_groups"] = list(self.approver_groups)
        item["region"] = self.region
        return item


@dataclass(frozen=True, slots=True)
class RoleRow:
    name: str
    description: str = ""
    privileged: bool = False
    max_session: timedelta = timedelta(minutes=DEFAULT_SESSION_MINUTES)

    kind = "role"

    @property
    def key(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return f"role {self.name}"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name}
        if self.description:
            item["description"] = self.description
        item["privileged"] = self.privileged
        item["max_session_minutes"] = _minutes(self.max_session)
        return item


@dataclass(frozen=True, slots=True)
class AccountRoleRow:
    account_id: str
    role: str
    role_arn: str = ""  # empty: the default arn:aws:iam::<account>:role/<role>
    max_session: timedelta | None = None  # None: the logical role's

    kind = "account_role"

    @property
    def key(self) -> tuple[str, str]:
        return (self.account_id, self.role)

    @property
    def label(self) -> str:
        return f"account role {self.role} in {self.account_id}"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"account": self.account_id, "role": self.role}
        if self.role_arn:
            item["role_arn"] = self.role_arn
        if self.max_session is not None:
            item["max_session_minutes"] = _minutes(self.max_session)
        return item


MappingKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class MappingRow:
    group: str
    role: str
    business_unit: str
    access: str
    environments: tuple[str, ...] = ()  # sorted; empty = every environment
    accounts: tuple[str, ...] = ()  # sorted account ids; empty = every account of the BU
    max_grant: timedelta | None = None  # eligible rows only
    approver_groups: tuple[str, ...] = ()  # eligible rows only

    kind = "mapping"

    @property
    def key(self) -> MappingKey:
        return (self.group, self.role, self.business_unit, self.environments, self.accounts)

    @property
    def label(self) -> str:
        scope = []
        if self.environments:
            scope.append(f"environments {', '.join(self.environments)}")
        if self.accounts:
            scope.append(f"accounts {', '.join(self.accounts)}")
        where = f" [{'; '.join(scope)}]" if scope else ""
        return f"mapping {self.group} -> {self.role} in {self.business_unit}{where}"

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "group": self.group,
            "role": self.role,
            "business_unit": self.business_unit,
        }
        if self.environments:
            item["environments"] = list(self.environments)
        if self.accounts:
            item["accounts"] = list(self.accounts)
        item["access"] = self.access
        if self.max_grant is not None:
            item["max_grant_minutes"] = _minutes(self.max_grant)
        if self.approver_groups:
            item["approver_groups"] = list(self.approver_groups)
        return item


@dataclass(frozen=True)
class MappingDocument:
    """A validated, canonical (sorted) mapping document; build it with ``make_document()``."""

    business_units: tuple[BusinessUnitRow, ...] = ()
    accounts: tuple[AccountRow, ...] = ()
    roles: tuple[RoleRow, ...] = ()
    account_roles: tuple[AccountRoleRow, ...] = ()
    mappings: tuple[MappingRow, ...] = ()

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The canonical JSON-able form: what export writes and MappingVersion.document stores."""
        return {
            "business_units": [row.to_dict() for row in self.business_units],
            "accounts": [row.to_dict() for row in self.accounts],
            "roles": [row.to_dict() for row in self.roles],
            "account_roles": [row.to_dict() for row in self.account_roles],
            "mappings": [row.to_dict() for row in self.mappings],
        }


def make_document(
    business_units: Iterable[BusinessUnitRow] = (),
    accounts: Iterable[AccountRow] = (),
    roles: Iterable[RoleRow] = (),
    account_roles: Iterable[AccountRoleRow] = (),
    mappings: Iterable[MappingRow] = (),
) -> MappingDocument:
    """Rows in canonical order, so equal states give equal documents and stable exports."""
    return MappingDocument(
        business_units=tuple(sorted(business_units, key=lambda r: r.slug)),
        accounts=tuple(
            sorted(
                accounts,
                key=lambda r: (r.business_unit, ENV_ORDER.get(r.environment, 9), r.alias),
            )
        ),
        roles=tuple(sorted(roles, key=lambda r: r.name)),
        account_roles=tuple(sorted(account_roles, key=lambda r: r.key)),
        mappings=tuple(
            sorted(
                mappings,
                key=lambda r: (r.business_unit, r.group, r.role, r.environments, r.accounts),
            )
        ),
    )


# --- Schema (one item at a time, so one bad row does not hide the others' faults) ------------


def _check_account_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError(
            "account_id_type",
            "account ids must be quoted strings of 12 digits: YAML read this one as the number "
            "{number} (unquoted digits lose leading zeros or are read as octal); "
            'write it in quotes, e.g. "123456789012"',
            {"number": value},
        )
    if isinstance(value, str) and not _ACCOUNT_ID.match(value):
        raise PydanticCustomError(
            "account_id",
            "account id must be exactly 12 digits (accounts are named by id, not alias), "
            "got {value}",
            {"value": repr(value)},
        )
    return value


def _check_slug(value: str) -> str:
    if not _SLUG.match(value):
        raise PydanticCustomError(
            "slug",
            "{value} is not a valid name: use lowercase letters, digits and hyphens, starting "
            "with a letter or digit, at most 63 characters",
            {"value": repr(value)},
        )
    return value


def _check_group(value: str) -> str:
    if not value or len(value) > 256:
        raise PydanticCustomError("group", "group names are 1 to 256 characters long")
    if value != value.strip() or any(ord(ch) < 32 for ch in value):
        raise PydanticCustomError(
            "group",
            "group name {value} has leading/trailing spaces or control characters",
            {"value": repr(value)},
        )
    return value


def _check_region(value: str) -> str:
    if not _REGION.match(value):
        raise PydanticCustomError(
            "region", "{value} is not an AWS region name (e.g. eu-west-1)", {"value": repr(value)}
        )
    return value


AccountId = Annotated[str, BeforeValidator(_check_account_id)]
Slug = Annotated[str, AfterValidator(_check_slug)]
GroupName = Annotated[str, AfterValidator(_check_group)]
Region = Annotated[str, AfterValidator(_check_region)]
EnvironmentName = Literal["dev", "test", "prod"]
SessionMinutes = Annotated[int, Field(ge=SESSION_MINUTES_RANGE[0], le=SESSION_MINUTES_RANGE[1])]
GrantMinutes = Annotated[int, Field(ge=MAX_GRANT_MINUTES_RANGE[0], le=MAX_GRANT_MINUTES_RANGE[1])]


class _Item(BaseModel):
    # strict: YAML's "yes", 60.0 or 111111111111 never silently become a str/int/bool.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _BusinessUnitItem(_Item):
    slug: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    approver_groups: list[GroupName] = Field(default_factory=list)


class _AccountItem(_Item):
    id: AccountId
    alias: Slug
    business_unit: Slug
    environment: EnvironmentName
    approvals_required: Annotated[int, Field(ge=1, le=32767)] | None = None
    approver_groups: list[GroupName] = Field(default_factory=list)
    region: Region = DEFAULT_REGION


class _RoleItem(_Item):
    name: Slug
    description: Annotated[str, Field(max_length=500)] = ""
    privileged: bool = False
    max_session_minutes: SessionMinutes = DEFAULT_SESSION_MINUTES


class _AccountRoleItem(_Item):
    account: AccountId
    role: Slug
    role_arn: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    max_session_minutes: SessionMinutes | None = None


class _MappingItem(_Item):
    group: GroupName
    role: Slug
    business_unit: Slug
    access: Literal["standing", "eligible"]
    environments: list[EnvironmentName] = Field(default_factory=list)
    accounts: list[AccountId] = Field(default_factory=list)
    max_grant_minutes: GrantMinutes | None = None
    approver_groups: list[GroupName] = Field(default_factory=list)


ItemT = TypeVar("ItemT", bound=_Item)
Loc = tuple[str | int, ...]

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "model_type": "a mapping of keys to values",
    "dict_type": "a mapping of keys to values",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value})"


def _path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Checker:
    """Collects faults with the YAML line of the item at fault (when the text is known)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root
        self.errors: list[MappingError] = []

    def line(self, loc: Loc) -> int | None:
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        child, line = value_node, key_node.start_mark.line + 1
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                child = node.value[part]
                line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line

    def add(self, loc: Loc, message: str) -> None:
        self.errors.append(MappingError(self.line(loc), _path(loc), message))

    def items(self, section: str, raw: list[Any], model: type[ItemT]) -> list[tuple[int, ItemT]]:
        valid: list[tuple[int, ItemT]] = []
        for index, item in enumerate(raw):
            try:
                valid.append((index, model.model_validate(item)))
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    loc = (section, index, *error["loc"])
                    self.add(loc, _schema_message(error, model))
        return valid


def _schema_message(error: Any, model: type[_Item]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "missing":
        return f"missing key {loc[-1]!r}"
    if kind == "extra_forbidden":
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {loc[-1]!r} ({hint}allowed: {', '.join(allowed)})"
    if kind in _TYPE_WORDS:
        message = f"expected {_TYPE_WORDS[kind]}, got {_describe(error['input'])}"
        if kind == "string_type" and not isinstance(error["input"], list | dict | type(None)):
            message += " (put it in quotes)"
        return message
    if kind == "literal_error":
        return (
            f"{error['msg'].replace('Input should be', 'must be')}, got {_describe(error['input'])}"
        )
    if kind in ("greater_than_equal", "less_than_equal", "string_too_long", "string_too_short"):
        return f"{error['msg'].replace('Input should', 'must')}, got {_describe(error['input'])}"
    return str(error["msg"])


def _declared(raw: list[Any], key: str) -> set[str]:
    """Names declared by items, valid or not, so one bad item does not cascade into others."""
    return {item[key] for item in raw if isinstance(item, dict) and isinstance(item.get(key), str)}


def _no_repeats(check: _Checker, loc: Loc, values: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            check.add((*loc, index), f"{what} {value!r} is listed twice")
        seen.add(value)


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}"


def _validate(data: Any, root: yaml.Node | None) -> MappingDocument:
    check = _Checker(root)
    if not isinstance(data, dict):
        check.add(
            (),
            f"the document must be a mapping with the sections {', '.join(SECTIONS)} "
            f"(account_roles is optional); got {_describe(data)}",
        )
        raise MappingFileInvalid(check.errors)
    for key in data:
        if key not in SECTIONS:
            close = difflib.get_close_matches(str(key), SECTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            check.add(
                (str(key),), f"unknown section {key!r} ({hint}sections: {', '.join(SECTIONS)})"
            )
    raw: dict[str, list[Any]] = {}
    for section in SECTIONS:
        value = data.get(section, [] if section not in REQUIRED_SECTIONS else None)
        if section not in data and section in REQUIRED_SECTIONS:
            check.add((), f"missing section {section!r} (write `{section}: []` for none)")
            value = []
        if not isinstance(value, list):
            check.add((section,), f"section {section!r} must be a list, got {_describe(value)}")
            value = []
        raw[section] = value

    bus = check.items("business_units", raw["business_units"], _BusinessUnitItem)
    accounts = check.items("accounts", raw["accounts"], _AccountItem)
    roles = check.items("roles", raw["roles"], _RoleItem)
    account_roles = check.items("account_roles", raw["account_roles"], _AccountRoleItem)
    mappings = check.items("mappings", raw["mappings"], _MappingItem)

    known_bus = _declared(raw["business_units"], "slug")
    known_roles = _declared(raw["roles"], "name")
    known_accounts = _declared(raw["accounts"], "id")

    first_line: dict[tuple[str, Any], int | None] = {}

    def duplicate(loc: Loc, kind: str, key: Any, message: str) -> None:
        if (kind, key) in first_line:
            line = first_line[(kind, key)]
            check.add(loc, f"{message} (first on line {line})" if line else message)
        else:
            first_line[(kind, key)] = check.line(loc[:2])

    bu_rows = []
    for index, bu in bus:
        loc: Loc = ("business_units", index)
        duplicate((*loc, "slug"), "bu", bu.slug, f"duplicate business unit {bu.slug!r}")
        _no_repeats(check, (*loc, "approver_groups"), bu.approver_groups, "approver group")
        bu_rows.append(BusinessUnitRow(bu.slug, bu.name, tuple(sorted(set(bu.approver_groups)))))

    account_rows: dict[str, AccountRow] = {}
    for index, account in accounts:
        loc = ("accounts", index)
        duplicate((*loc, "id"), "account", account.id, f"duplicate account id {account.id!r}")
        duplicate((*loc, "alias"), "alias", account.alias, f"duplicate alias {account.alias!r}")
        if account.business_unit not in known_bus:
            check.add(
                (*loc, "business_unit"), _unknown("business unit", account.business_unit, known_bus)
            )
        _no_repeats(check, (*loc, "approver_groups"), account.approver_groups, "approver group")
        account_rows.setdefault(
            account.id,
            AccountRow(
                account_id=account.id,
                alias=account.alias,
                business_unit=account.business_unit,
                environment=account.environment,
                approvals_required=account.approvals_required
                or Account.default_approvals(account.environment),
                approver_groups=tuple(sorted(set(account.approver_groups))),
                region=account.region,
            ),
        )

    role_rows = []
    for index, role in roles:
        loc = ("roles", index)
        duplicate((*loc, "name"), "role", role.name, f"duplicate role {role.name!r}")
        role_rows.append(
            RoleRow(
                role.name,
                role.description,
                role.privileged,
                timedelta(minutes=role.max_session_minutes),
            )
        )

    def account_ref(loc: Loc, account_id: str) -> bool:
        if account_id in known_accounts:
            return True
        check.add(loc, f"unknown account {account_id!r}")
        return False

    account_role_rows = []
    for index, override in account_roles:
        loc = ("account_roles", index)
        account_ref((*loc, "account"), override.account)
        if override.role not in known_roles:
            check.add((*loc, "role"), _unknown("role", override.role, known_roles))
        key = (override.account, override.role)
        duplicate(
            loc,
            "account_role",
            key,
            f"duplicate account role {override.role!r} in {override.account}",
        )
        if override.role_arn is not None:
            match = _ROLE_ARN.match(override.role_arn)
            if match is None:
                check.add(
                    (*loc, "role_arn"),
                    f"{override.role_arn!r} is not an IAM role ARN "
                    "(arn:aws:iam::<account>:role/<name>)",
                )
            elif match.group(2) != override.account:
                check.add(
                    (*loc, "role_arn"),
                    f"role ARN is in account {match.group(2)}, not in {override.account}",
                )
        account_role_rows.append(
            AccountRoleRow(
                override.account,
                override.role,
                override.role_arn or "",
                None
                if override.max_session_minutes is None
                else timedelta(minutes=override.max_session_minutes),
            )
        )

    mapping_rows = []
    for index, item in mappings:
        loc = ("mappings", index)
        if item.role not in known_roles:
            check.add((*loc, "role"), _unknown("role", item.role, known_roles))
        if item.business_unit not in known_bus:
            check.add(
                (*loc, "business_unit"), _unknown("business unit", item.business_unit, known_bus)
            )
        _no_repeats(check, (*loc, "environments"), item.environments, "environment")
        _no_repeats(check, (*loc, "accounts"), item.accounts, "account")
        _no_repeats(check, (*loc, "approver_groups"), item.approver_groups, "approver group")
        for position, account_id in enumerate(item.accounts):
            account_loc = (*loc, "accounts", position)
            if not account_ref(account_loc, account_id):
                continue
            target = account_rows.get(account_id)
            if target is None:
                continue  # the account's own item is invalid and reported there
            if target.business_unit != item.business_unit:
                check.add(
                    account_loc,
                    f"account {account_id} belongs to business unit {target.business_unit!r}, "
                    f"not {item.business_unit!r}",
                )
            elif item.environments and target.environment not in item.environments:
                check.add(
                    account_loc,
                    f"account {account_id} is a {target.environment} account, outside this "
                    f"row's environments ({', '.join(item.environments)})",
                )
        if item.access == "standing":
            if item.max_grant_minutes is not None:
                check.add(
                    (*loc, "max_grant_minutes"),
                    "max_grant_minutes applies to eligible rows only "
                    "(standing access never expires)",
                )
            if item.approver_groups:
                check.add(
                    (*loc, "approver_groups"),
                    "approver_groups applies to eligible rows only "
                    "(standing access is not approved)",
                )
            max_grant = None
        else:
            max_grant = timedelta(minutes=item.max_grant_minutes or DEFAULT_MAX_GRANT_MINUTES)
        row = MappingRow(
            group=item.group,
            role=item.role,
            business_unit=item.business_unit,
            access=item.access,
            # Sorted as GroupMapping.clean() wants, so equal scopes meet in the unique index.
            environments=tuple(sorted(set(item.environments))),
            accounts=tuple(sorted(set(item.accounts))),
            max_grant=max_grant,
            approver_groups=tuple(sorted(set(item.approver_groups))),
        )
        duplicate(
            loc,
            "mapping",
            row.key,
            f"duplicate mapping: group {row.group!r} -> role {row.role!r} in "
            f"{row.business_unit!r} with the same environments and accounts",
        )
        mapping_rows.append(row)

    if check.errors:
        raise MappingFileInvalid(check.errors)
    return make_document(bu_rows, account_rows.values(), role_rows, account_role_rows, mapping_rows)


def _yaml_loader(text: str) -> yaml.SafeLoader:
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: yaml.SafeLoader = loader_class(text)
    return loader


def _check_nodes(root: yaml.Node) -> list[MappingError]:
    """Duplicate keys (PyYAML keeps the last silently) and aliases (billion-laughs) are refused."""
    errors: list[MappingError] = []
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            errors.append(
                MappingError(
                    node.start_mark.line + 1,
                    "",
                    "anchors and aliases (&name, *name) are not supported in mapping files",
                )
            )
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    line = key_node.start_mark.line + 1
                    if key_node.value in keys:
                        errors.append(
                            MappingError(
                                line,
                                "",
                                f"duplicate key {key_node.value!r} (first on line "
                                f"{keys[key_node.value]})",
                            )
                        )
                    keys.setdefault(key_node.value, line)
                stack.extend((key_node, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return errors


def parse_document(text: str) -> MappingDocument:
    """Parse and validate a YAML mapping file (SPEC §3.3).

    Raises MappingFileInvalid listing every fault found, each with the line of the item at
    fault. Nothing touches the database.
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        raise MappingFileInvalid(
            [MappingError(None, "", f"the file is larger than {MAX_DOCUMENT_CHARS} characters")]
        )
    loader = _yaml_loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise MappingFileInvalid(
                [
                    MappingError(
                        1, "", f"the file is empty; expected the sections {', '.join(SECTIONS)}"
                    )
                ]
            )
        node_errors = _check_nodes(root)
        if node_errors:
            raise MappingFileInvalid(node_errors)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(p for p in (exc.context, exc.problem) if p)
        line = mark.line + 1 if mark is not None else None
        column = f" (column {mark.column + 1})" if mark is not None else ""
        raise MappingFileInvalid(
            [MappingError(line, "", f"not valid YAML{column}: {problem}")]
        ) from exc
    except yaml.YAMLError as exc:
        raise MappingFileInvalid([MappingError(None, "", f"not valid YAML: {exc}")]) from exc
    except RecursionError as exc:
        raise MappingFileInvalid([MappingError(None, "", "the YAML is nested too deeply")]) from exc
    finally:
        loader.dispose()
    return _validate(data, root)


def document_from_data(data: Any) -> MappingDocument:
    """Validate an already-parsed document (a stored MappingVersion.document, a UI payload).

    Same rules as parse_document; errors carry paths but no lines.
    """
    return _validate(data, None)


def _dump_yaml(data: Any) -> str:
    class FlowItem(dict[str, Any]):
        pass

    dumper_base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(dumper_base):  # type: ignore[valid-type,misc]
        pass

    def flow(dumper: yaml.SafeDumper, item: FlowItem) -> yaml.Node:
        return dumper.represent_mapping("tag:yaml.org,2002:map", item.items(), flow_style=True)

    Dumper.add_representer(FlowItem, flow)
    shaped = {section: [FlowItem(item) for item in rows] for section, rows in data.items()}
    dumped: str = yaml.dump(
        shaped,
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
    return dumped


# --- The current state ------------------------------------------------------------------------


@dataclass
class _Current:
    """The tables as a document, plus the primary keys the writer needs."""

    version: int
    document: MappingDocument
    bu_pk: dict[str, int] = field(default_factory=dict)
    account_pk: dict[str, int] = field(default_factory=dict)
    role_pk: dict[str, int] = field(default_factory=dict)
    account_role_pk: dict[tuple[str, str], int] = field(default_factory=dict)
    mapping_pk: dict[MappingKey, int] = field(default_factory=dict)
    # Rows that collapse onto another's key once normalised (only ever written outside this
    # module); the apply removes them.
    stray_mapping_pks: list[int] = field(default_factory=list)


def get_current_version() -> int:
    """The number of the latest mapping version, 0 when none was ever applied."""
    number = MappingVersion.objects.aggregate(latest=Max("number"))["latest"]
    return int(number or 0)


def _load_current() -> _Current:
    # The version is read first: if an apply commits while the tables are read, the plan's base
    # is older than what it saw and a later apply with that base is refused, never wrong.
    current = _Current(version=get_current_version(), document=MappingDocument())
    bus = []
    for pk, slug, name, approver_groups in BusinessUnit.objects.values_list(
        "pk", "slug", "name", "approver_groups"
    ):
        current.bu_pk[slug] = pk
        bus.append(BusinessUnitRow(slug, name, tuple(sorted(set(approver_groups or [])))))
    accounts = []
    for (
        pk,
        account_id,
        alias,
        bu,
        env,
        approvals,
        approver_groups,
        region,
    ) in Account.objects.values_list(
        "pk",
        "account_id",
        "alias",
        "business_unit__slug",
        "environment",
        "approvals_required",
        "approver_groups",
        "region",
    ):
        current.account_pk[account_id] = pk
        accounts.append(
            AccountRow(
                account_id,
                alias,
                bu,
                env,
                approvals,
                tuple(sorted(set(approver_groups or []))),
                region,
            )
        )
    roles = []
    for pk, name, description, max_session, privileged in LogicalRole.objects.values_list(
        "pk", "name", "description", "max_session", "privileged"
    ):
        current.role_pk[name] = pk
        roles.append(RoleRow(name, description, privileged, max_session))
    account_roles = []
    for pk, account_id, role, arn, override in AccountRole.objects.values_list(
        "pk", "account__account_id", "role__name", "role_arn", "max_session"
    ):
        current.account_role_pk[(account_id, role)] = pk
        account_roles.append(AccountRoleRow(account_id, role, arn, override))
    mappings = []
    for (
        pk,
        group,
        role,
        bu,
        envs,
        accts,
        access,
        max_grant,
        approver_groups,
    ) in GroupMapping.objects.order_by("pk").values_list(
        "pk",
        "group",
        "role__name",
        "business_unit__slug",
        "environments",
        "accounts",
        "access",
        "max_grant",
        "approver_groups",
    ):
        row = MappingRow(
            group,
            role,
            bu,
            access,
            tuple(sorted(set(envs or []))),
            tuple(sorted(set(accts or []))),
            max_grant,
            tuple(sorted(set(approver_groups or []))),
        )
        if row.key in current.mapping_pk:
            current.stray_mapping_pks.append(pk)
            continue
        current.mapping_pk[row.key] = pk
        mappings.append(row)
    current.document = make_document(bus, accounts, roles, account_roles, mappings)
    return current


def export_document() -> dict[str, list[dict[str, Any]]]:
    """The tables as a canonical document dict (what MappingVersion.document stores)."""
    return _load_current().document.to_dict()


def dump_document_yaml(document: MappingDocument | None = None) -> str:
    """The document (default: the tables now) as canonical YAML; importing it back is a no-op."""
    if document is None:
        current = _load_current()
        document, version = current.document, current.version
        header = f"# Mapping file (SPEC §3.3), exported from mapping version {version}.\n"
    else:
        header = "# Mapping file (SPEC §3.3).\n"
    header += "# It is the complete desired state: rows missing from it are removed on import.\n"
    return header + _dump_yaml(document.to_dict())


# --- Planning ---------------------------------------------------------------------------------


class _Row(Protocol):
    @property
    def key(self) -> Any: ...
    @property
    def label(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


RowT = TypeVar("RowT", bound=_Row)


@dataclass(frozen=True)
class _TableDiff(Generic[RowT]):
    added: tuple[RowT, ...]
    removed: tuple[RowT, ...]
    changed: tuple[tuple[RowT, RowT], ...]  # (before, after)


def _diff_table(before: Sequence[RowT], after: Sequence[RowT]) -> _TableDiff[RowT]:
    old = {row.key: row for row in before}
    new = {row.key: row for row in after}
    return _TableDiff(
        added=tuple(row for key, row in new.items() if key not in old),
        removed=tuple(row for key, row in old.items() if key not in new),
        changed=tuple(
            (old[key], row) for key, row in new.items() if key in old and old[key] != row
        ),
    )


@dataclass(frozen=True)
class RowChange:
    """One row added, removed or changed; before/after are canonical item dicts."""

    kind: str  # business_unit, account, role, account_role, mapping
    action: str  # add, remove, change
    label: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None

    @property
    def changed_fields(self) -> tuple[str, ...]:
        before, after = self.before or {}, self.after or {}
        return tuple(k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "label": self.label,
            "before": dict(self.before) if self.before is not None else None,
            "after": dict(self.after) if self.after is not None else None,
        }


@dataclass(frozen=True)
class AccessItem:
    """One (account, role, access kind) a group or user gains or loses."""

    account_id: str
    account_alias: str
    business_unit: str
    environment: str
    role: str
    access: str  # standing or eligible
    privileged: bool

    def __str__(self) -> str:
        flag = "  [privileged]" if self.privileged else ""
        return (
            f"{self.role} ({self.access}) in {self.account_alias} {self.account_id} "
            f"[{self.business_unit}/{self.environment}]{flag}"
        )


@dataclass(frozen=True)
class AccessDiff:
    """What one group (or one known user, through their groups) gains and loses."""

    subject: str  # the group name, or the user's label
    gained: tuple[AccessItem, ...]
    lost: tuple[AccessItem, ...]
    user_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"subject": self.subject}
        if self.user_id is not None:
            item["user_id"] = self.user_id
        item["gained"] = _access_json(self.gained)
        item["lost"] = _access_json(self.lost)
        return item


def _access_json(items: Sequence[AccessItem]) -> list[dict[str, Any]]:
    """Items grouped by (role, access): a first import gains every user hundreds of items, and
    their accounts' alias, unit and environment go once into the plan's "accounts" table."""
    grouped: dict[tuple[str, str, bool], list[str]] = {}
    for a in items:
        grouped.setdefault((a.role, a.access, a.privileged), []).append(a.account_id)
    return [
        {"role": role, "access": access, "privileged": privileged, "accounts": accounts}
        for (role, access, privileged), accounts in grouped.items()
    ]


@dataclass(frozen=True)
class Plan:
    """The difference between the tables (at ``base_version``) and a document.

    ``rows`` is the row-level diff; ``groups`` and ``users`` the effective-access diff;
    ``blockers`` the removals the database would refuse (apply raises RemovalRefused).
    """

    base_version: int
    rows: tuple[RowChange, ...]
    groups: tuple[AccessDiff, ...]
    users: tuple[AccessDiff, ...]
    blockers: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.rows

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        counts = {
            kind: {"add": 0, "remove": 0, "change": 0}
            for kind in ("business_unit", "account", "role", "account_role", "mapping")
        }
        for row in self.rows:
            counts[row.kind][row.action] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "base_version": self.base_version,
            "counts": self.counts,
            "rows": [row.to_json() for row in self.rows],
            "groups": [diff.to_json() for diff in self.groups],
            "users": [diff.to_json() for diff in self.users],
            "blockers": list(self.blockers),
            "accounts": self._accounts_json(),
        }

    def _accounts_json(self) -> dict[str, dict[str, str]]:
        accounts: dict[str, dict[str, str]] = {}
        for diff in self.groups:
            for item in (*diff.gained, *diff.lost):
                if item.account_id not in accounts:
                    accounts[item.account_id] = {
                        "alias": item.account_alias,
                        "business_unit": item.business_unit,
                        "environment": item.environment,
                    }
        return accounts

    def render_text(self) -> str:
        lines = [f"Plan against mapping version {self.base_version}:"]
        if self.is_empty:
            lines.append("  No changes: the tables already match this document.")
            return "\n".join(lines) + "\n"
        summary = []
        for kind, counts in self.counts.items():
            if any(counts.values()):
                summary.append(
                    f"{kind.replace('_', ' ')}s +{counts['add']} -{counts['remove']} "
                    f"~{counts['change']}"
                )
        lines.append(f"  {'; '.join(summary)}")
        lines.append("")
        lines.append("Rows:")
        sign = {"add": "+", "remove": "-", "change": "~"}
        for row in self.rows:
            if row.action == "change":
                before, after = row.before or {}, row.after or {}
                detail = "; ".join(
                    f"{name}: {_show(before.get(name))} -> {_show(after.get(name))}"
                    for name in row.changed_fields
                )
            else:
                detail = ", ".join(
                    f"{name}={_show(value)}"
                    for name, value in (row.after or row.before or {}).items()
                )
            lines.append(f"  {sign[row.action]} {row.label}: {detail}")
        for title, diffs in (
            ("Access by group", self.groups),
            ("Access by user (groups of their last sign-in)", self.users),
        ):
            lines.append("")
            lines.append(f"{title}:" if diffs else f"{title}: no change")
            for diff in diffs:
                lines.append(f"  {diff.subject}")
                lines.extend(f"    + {item}" for item in diff.gained)
                lines.extend(f"    - {item}" for item in diff.lost)
        if self.blockers:
            lines.append("")
            lines.append("Refused (these rows are still referenced and cannot be removed):")
            lines.extend(f"  ! {blocker}" for blocker in self.blockers)
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return f"[{', '.join(map(str, value))}]"
    return str(value)


_AccessMap = dict[tuple[str, str], str]  # (account id, role) -> standing | eligible


class _Expander:
    """Mapping rows of one state expanded to (account, role) per group, as entitlements does."""

    def __init__(self, document: MappingDocument) -> None:
        self.accounts = {a.account_id: a for a in document.accounts}
        self.roles = {r.name: r for r in document.roles}
        self.by_bu: dict[str, list[AccountRow]] = {}
        self.by_bu_env: dict[tuple[str, str], list[AccountRow]] = {}
        for account in document.accounts:
            self.by_bu.setdefault(account.business_unit, []).append(account)
            self.by_bu_env.setdefault((account.business_unit, account.environment), []).append(
                account
            )
        self.rows: dict[str, list[MappingRow]] = {}
        for row in document.mappings:
            self.rows.setdefault(row.group, []).append(row)
        self._memo: dict[str, _AccessMap] = {}
        self._items: dict[tuple[tuple[str, str], str], tuple[tuple[Any, ...], AccessItem]] = {}

    def bu_signature(self, bu: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((a.account_id, a.environment) for a in self.by_bu.get(bu, ())))

    def access(self, group: str) -> _AccessMap:
        found = self._memo.get(group)
        if found is not None:
            return found
        found = {}
        for row in self.rows.get(group, ()):
            if row.role not in self.roles:
                continue
            targets: Iterable[AccountRow]
            if row.accounts:
                # Business-unit isolation, as in entitlements._expand: a row never reaches an
                # account of another business unit, even if it names one.
                targets = [
                    a
                    for a in (self.accounts.get(account_id) for account_id in row.accounts)
                    if a is not None
                    and a.business_unit == row.business_unit
                    and (not row.environments or a.environment in row.environments)
                ]
            elif row.environments:
                targets = [
                    a
                    for env in row.environments
                    for a in self.by_bu_env.get((row.business_unit, env), ())
                ]
            else:
                targets = self.by_bu.get(row.business_unit, ())
            for account in targets:
                key = (account.account_id, row.role)
                if row.access == Access.STANDING or key not in found:
                    found[key] = row.access
        self._memo[group] = found
        return found

    def item(self, key: tuple[str, str], access: str) -> tuple[tuple[Any, ...], AccessItem]:
        """The AccessItem and its sort key; memoised, as a first import repeats them per user."""
        found = self._items.get((key, access))
        if found is None:
            account = self.accounts[key[0]]
            role = self.roles.get(key[1])
            item = AccessItem(
                account_id=account.account_id,
                account_alias=account.alias,
                business_unit=account.business_unit,
                environment=account.environment,
                role=key[1],
                access=access,
                privileged=bool(role and role.privileged),
            )
            order = (
                item.business_unit,
                ENV_ORDER.get(item.environment, 9),
                item.account_alias,
                item.role,
                item.access,
            )
            found = self._items[(key, access)] = (order, item)
        return found

    def merged(self, groups: Iterable[str]) -> _AccessMap:
        """What holding all ``groups`` gives: standing wins over eligible, as in entitlements."""
        merged: _AccessMap = {}
        for group in groups:
            for key, access in self.access(group).items():
                if access == Access.STANDING or key not in merged:
                    merged[key] = access
        return merged


def _compare(
    before: _Expander,
    after: _Expander,
    keys: Iterable[tuple[str, str]],
    old: _AccessMap,
    new: _AccessMap,
) -> tuple[tuple[AccessItem, ...], tuple[AccessItem, ...]]:
    gained: list[tuple[tuple[Any, ...], AccessItem]] = []
    lost: list[tuple[tuple[Any, ...], AccessItem]] = []
    for key in keys:
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        if now is not None:
            gained.append(after.item(key, now))
        if was is not None:
            lost.append(before.item(key, was))
    gained.sort(key=lambda pair: pair[0])
    lost.sort(key=lambda pair: pair[0])
    return tuple(item for _, item in gained), tuple(item for _, item in lost)


def _access_diffs(
    before_doc: MappingDocument, after_doc: MappingDocument
) -> tuple[tuple[AccessDiff, ...], tuple[AccessDiff, ...]]:
    before, after = _Expander(before_doc), _Expander(after_doc)
    bus = set(before.by_bu) | set(after.by_bu)
    moved_bus = {bu for bu in bus if before.bu_signature(bu) != after.bu_signature(bu)}
    roles_changed = set(before.roles) ^ set(after.roles)
    candidates = set()
    for group in set(before.rows) | set(after.rows):
        old_rows, new_rows = before.rows.get(group, []), after.rows.get(group, [])
        if (
            set(old_rows) != set(new_rows)
            or any(r.business_unit in moved_bus or r.role in roles_changed for r in old_rows)
            or any(r.business_unit in moved_bus or r.role in roles_changed for r in new_rows)
        ):
            candidates.add(group)

    group_diffs: dict[str, AccessDiff] = {}
    touched: dict[str, set[tuple[str, str]]] = {}
    for group in sorted(candidates):
        old_map, new_map = before.access(group), after.access(group)
        keys = {k for k in old_map.keys() | new_map.keys() if old_map.get(k) != new_map.get(k)}
        if not keys:
            continue
        gained, lost = _compare(before, after, keys, old_map, new_map)
        group_diffs[group] = AccessDiff(group, gained, lost)
        touched[group] = keys

    user_diffs: list[AccessDiff] = []
    if group_diffs:
        users = User.objects.order_by("pk").values_list(
            "pk", "username", "email", "directory_groups"
        )
        for pk, username, email, directory_groups in users:
            groups = {g for g in directory_groups or [] if isinstance(g, str)}
            changed = groups & touched.keys()
            if not changed:
                continue
            # Groups the plan does not touch give the same before and after, so only the
            # touched keys can differ.
            keys = set().union(*(touched[g] for g in changed))
            gained, lost = _compare(
                before, after, keys, before.merged(groups), after.merged(groups)
            )
            if gained or lost:
                user_diffs.append(AccessDiff(email or username, gained, lost, user_id=pk))
    return tuple(group_diffs.values()), tuple(user_diffs)


@dataclass(frozen=True)
class _Diff:
    business_units: _TableDiff[BusinessUnitRow]
    accounts: _TableDiff[AccountRow]
    roles: _TableDiff[RoleRow]
    account_roles: _TableDiff[AccountRoleRow]
    mappings: _TableDiff[MappingRow]

    def tables(self) -> tuple[tuple[str, _TableDiff[Any]], ...]:
        return (
            ("business_unit", self.business_units),
            ("account", self.accounts),
            ("role", self.roles),
            ("account_role", self.account_roles),
            ("mapping", self.mappings),
        )


def _row_changes(diff: _Diff) -> tuple[RowChange, ...]:
    changes: list[RowChange] = []
    for kind, table in diff.tables():
        changes.extend(RowChange(kind, "add", r.label, None, r.to_dict()) for r in table.added)
        changes.extend(RowChange(kind, "remove", r.label, r.to_dict(), None) for r in table.removed)
        changes.extend(
            RowChange(kind, "change", new.label, old.to_dict(), new.to_dict())
            for old, new in table.changed
        )
    return tuple(changes)


_MAPPING_MODELS: tuple[type[models.Model], ...] = (
    BusinessUnit,
    Account,
    LogicalRole,
    AccountRole,
    GroupMapping,
)


def _references(model: type[models.Model], pks: Mapping[int, str]) -> list[str]:
    """Rows outside the mapping tables that would stop these rows being deleted (PROTECT)."""
    if not pks:
        return []
    found: dict[int, list[str]] = {}
    # include_hidden: access_requests' foreign keys use related_name="+", which related_objects
    # leaves out.
    for relation in model._meta.get_fields(include_hidden=True):
        if not isinstance(relation, models.ForeignObjectRel):
            continue
        related = relation.related_model
        if (
            relation.on_delete not in (models.PROTECT, models.RESTRICT)
            or not isinstance(related, type)
            or related in _MAPPING_MODELS
        ):
            continue
        name = relation.field.name
        rows = (
            related._default_manager.filter(**{f"{name}__in": list(pks)})
            .values_list(name)
            .annotate(n=Count("pk"))
            .order_by()
        )
        for pk, count in rows:
            noun = related._meta.verbose_name if count == 1 else related._meta.verbose_name_plural
            found.setdefault(pk, []).append(f"{count} {noun}")
    return [
        f"{pks[pk]} is still referenced by {', '.join(found[pk])}; keep it in the file"
        for pk in sorted(found, key=lambda pk: pks[pk])
    ]


def _plan(document: MappingDocument, current: _Current) -> tuple[Plan, _Diff]:
    before = current.document
    diff = _Diff(
        business_units=_diff_table(before.business_units, document.business_units),
        accounts=_diff_table(before.accounts, document.accounts),
        roles=_diff_table(before.roles, document.roles),
        account_roles=_diff_table(before.account_roles, document.account_roles),
        mappings=_diff_table(before.mappings, document.mappings),
    )
    rows = _row_changes(diff)
    if current.stray_mapping_pks:
        rows += (
            RowChange(
                "mapping",
                "remove",
                f"{len(current.stray_mapping_pks)} duplicate mapping row(s) written outside "
                "the mapping file",
                {"ids": list(current.stray_mapping_pks)},
                None,
            ),
        )
    blockers = [
        *_references(Account, {current.account_pk[r.key]: r.label for r in diff.accounts.removed}),
        *_references(LogicalRole, {current.role_pk[r.key]: r.label for r in diff.roles.removed}),
        *_references(
            BusinessUnit, {current.bu_pk[r.key]: r.label for r in diff.business_units.removed}
        ),
    ]
    groups, users = _access_diffs(before, document) if rows else ((), ())
    return Plan(current.version, rows, groups, users, tuple(blockers)), diff


def plan_document(document: MappingDocument) -> Plan:
    """What applying ``document`` would change, against the tables as they are now.

    Read-only. ``Plan.base_version`` is the version it was computed against: pass it to
    apply_document() so the apply is refused if the tables moved in between.
    """
    return _plan(document, _load_current())[0]


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
            )
            for _, new in roles.changed
        ],
        ["description", "privileged", "max_session"],
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
        return GroupMapping(
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
    rolled_back_to: int | None = None,
) -> ApplyResult:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
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
            record_event(
                "mappings.rollback" if source == "rollback" else "mappings.apply",
                actor=actor,
                target=f"mapping version {number}",
                data=data,
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
) -> ApplyResult:
    """Make the tables equal to ``document``, atomically, as a new mapping version.

    Applies are serialised; with ``base_version`` the apply is refused (MappingConflict) unless
    the tables are still at that version. A document equal to the tables writes nothing and
    returns a result whose ``version`` is None ("No changes"). Otherwise one MappingVersion
    (number = previous + 1, the whole document, the plan) and one audit event are written in
    the same transaction. Raises RemovalRefused when a removed row is still referenced by access
    requests or grants; nothing is changed then.
    """
    return _apply(document, actor=actor, source=source, reason=reason, base_version=base_version)


def get_version_document(number: int) -> MappingDocument:
    """The document stored with mapping version ``number``; raises VersionNotFound."""
    version = MappingVersion.objects.filter(number=number).first()
    if version is None:
        latest = get_current_version()
        raise VersionNotFound(
            f"there is no mapping version {number} (versions run from 1 to {latest})"
            if latest
            else f"there is no mapping version {number} (no version was ever applied)"
        )
    return document_from_data(version.document)


def rollback_to_version(
    number: int,
    *,
    actor: User | str,
    reason: str = "",
    dry_run: bool = False,
    base_version: int | None = None,
) -> ApplyResult:
    """Restore the document of version ``number`` as a new version (source "rollback").

    With ``dry_run`` only the plan is computed. Raises VersionNotFound, and whatever
    apply_document() raises.
    """
    document = get_version_document(number)
    if dry_run:
        return ApplyResult(plan_document(document), None)
    why = f"rollback to version {number}" + (f": {reason}" if reason else "")
    return _apply(
        document,
        actor=actor,
        source="rollback",
        reason=why,
        base_version=base_version,
        rolled_back_to=number,
    )
