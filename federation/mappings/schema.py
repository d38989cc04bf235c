"""The shape of each item of a mapping file, checked one item at a time so that one bad row does
not hide the others' faults, and the sentences that name what is wrong with it."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from federation.mappings.document import DEFAULT_REGION, DEFAULT_SESSION_MINUTES
from federation.models import ACCOUNT_ID_RE, MIN_GRANT_MINUTES, SLUG_RE
from federation.models.catalog import MIN_GRANT_FAULT

# STS DurationSeconds bounds (models.MIN_SESSION / MAX_SESSION) in minutes.
SESSION_MINUTES_RANGE = (15, 720)
# Eligible access is time-bound by design: a day is the longest grant a row may allow.
MAX_GRANT_MINUTES_RANGE = (MIN_GRANT_MINUTES, 1440)

_ACCOUNT_ID = re.compile(ACCOUNT_ID_RE)
_SLUG = re.compile(SLUG_RE)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
# A managed policy: AWS's (account "aws"), one account's, or ${AccountId} for the same
# customer-managed policy deployed in every account. IAM: path and name of [\w+=,.@-].
POLICY_ARN_RE = (
    r"^arn:aws(-[a-z]+)*:iam::(aws|[0-9]{12}|\$\{AccountId\}):policy/"
    r"([\w+=,.@-]+/)*[\w+=,.@-]{1,128}$"
)
_POLICY_ARN = re.compile(POLICY_ARN_RE)


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


def _check_policy_arn(value: str) -> str:
    if not _POLICY_ARN.match(value):
        raise PydanticCustomError(
            "policy_arn",
            "{value} is not a managed policy ARN (arn:aws:iam::aws:policy/<name>, "
            "arn:aws:iam::<account>:policy/<name> or arn:aws:iam::${{AccountId}}:policy/<name>)",
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
PolicyArn = Annotated[str, AfterValidator(_check_policy_arn)]
EnvironmentName = Literal["dev", "test", "prod"]
SessionMinutes = Annotated[int, Field(ge=SESSION_MINUTES_RANGE[0], le=SESSION_MINUTES_RANGE[1])]
GrantMinutes = Annotated[int, Field(ge=MAX_GRANT_MINUTES_RANGE[0], le=MAX_GRANT_MINUTES_RANGE[1])]
# How long after an MFA sign-in a require_mfa role may still be issued: a minute to a day.
AUTH_AGE_MINUTES_RANGE = (1, 1440)
AuthAgeMinutes = Annotated[int, Field(ge=AUTH_AGE_MINUTES_RANGE[0], le=AUTH_AGE_MINUTES_RANGE[1])]


class Item(BaseModel):
    # strict: YAML's "yes", 60.0 or 111111111111 never silently become a str/int/bool.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BusinessUnitItem(Item):
    slug: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    approver_groups: list[GroupName] = Field(default_factory=list)


class AccountItem(Item):
    id: AccountId
    alias: Slug
    business_unit: Slug
    environment: EnvironmentName
    approvals_required: Annotated[int, Field(ge=1, le=32767)] | None = None
    approver_groups: list[GroupName] = Field(default_factory=list)
    region: Region = DEFAULT_REGION
    canary: bool = False


class RoleItem(Item):
    name: Slug
    description: Annotated[str, Field(max_length=500)] = ""
    privileged: bool = False
    max_session_minutes: SessionMinutes = DEFAULT_SESSION_MINUTES
    require_mfa: bool = False
    max_auth_age_minutes: AuthAgeMinutes | None = None
    policies: dict[EnvironmentName, list[PolicyArn]] = Field(default_factory=dict)


class AccountRoleItem(Item):
    account: AccountId
    role: Slug
    role_arn: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    max_session_minutes: SessionMinutes | None = None


class MappingItem(Item):
    group: GroupName
    role: Slug
    business_unit: Slug
    access: Literal["standing", "eligible", "break_glass"]
    environments: list[EnvironmentName] = Field(default_factory=list)
    accounts: list[AccountId] = Field(default_factory=list)
    max_grant_minutes: GrantMinutes | None = None
    approver_groups: list[GroupName] = Field(default_factory=list)


ItemT = TypeVar("ItemT", bound=Item)

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "model_type": "a mapping of keys to values",
    "dict_type": "a mapping of keys to values",
}


def describe(value: Any) -> str:
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


def schema_message(error: Any, model: type[Item]) -> str:
    """One pydantic fault as a sentence for the person who wrote the file."""
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
        message = f"expected {_TYPE_WORDS[kind]}, got {describe(error['input'])}"
        if kind == "string_type" and not isinstance(error["input"], list | dict | type(None)):
            message += " (put it in quotes)"
        return message
    if kind == "literal_error":
        return (
            f"{error['msg'].replace('Input should be', 'must be')}, got {describe(error['input'])}"
        )
    if kind == "greater_than_equal" and loc[-1] == "max_grant_minutes":
        return f"{MIN_GRANT_FAULT}, got {describe(error['input'])}"
    if kind in ("greater_than_equal", "less_than_equal", "string_too_long", "string_too_short"):
        return f"{error['msg'].replace('Input should', 'must')}, got {describe(error['input'])}"
    return str(error["msg"])
