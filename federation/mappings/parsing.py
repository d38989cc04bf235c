"""Parsing and validating mapping files: every fault found, each with the line at fault."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import yaml
from pydantic import ValidationError

from federation.input_guard import unsafe_character
from federation.mappings.document import (
    DEFAULT_MAX_GRANT_MINUTES,
    AccountRoleRow,
    AccountRow,
    BusinessUnitRow,
    MappingDocument,
    MappingRow,
    RoleRow,
    canonical_policies,
    make_document,
    row_faults,
)
from federation.mappings.errors import MappingError, MappingFileInvalid
from federation.mappings.schema import (
    AccountItem,
    AccountRoleItem,
    BusinessUnitItem,
    ItemT,
    MappingItem,
    RoleItem,
    describe,
    schema_message,
)
from federation.models import Access, Account

SECTIONS = ("business_units", "accounts", "roles", "account_roles", "mappings")
REQUIRED_SECTIONS = ("business_units", "accounts", "roles", "mappings")

# A bound on parser work for hostile or mistaken input; 10,000 rows are about 1.5 MB.
MAX_DOCUMENT_CHARS = 32 * 1024 * 1024

# GroupMapping fields by the names a mapping file gives them.
_ITEM_KEYS = {"max_grant": "max_grant_minutes"}
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}):role/[\w+=,.@/-]{1,512}$")


Loc = tuple[str | int, ...]


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

    def storable(self, loc: Loc, value: Any) -> bool:
        """Adds a fault for each string (key or value) the database cannot store: NUL and lone
        surrogates, which YAML's escapes ("\\0", "\\ud800") can produce. The dry run and the
        import both judge a document here, so what one accepts the other can store."""
        ok = True
        stack: list[tuple[Loc, Any]] = [(loc, value)]
        while stack:
            where, item = stack.pop()
            if isinstance(item, str):
                found = unsafe_character(item)
                if found is not None:
                    self.add(where, f"text contains {found}, which cannot be stored")
                    ok = False
            elif isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and unsafe_character(key) is not None:
                        self.add(where, f"key {key!r} contains a character that cannot be stored")
                        ok = False
                    else:
                        stack.append(((*where, str(key)), child))
            elif isinstance(item, list | tuple | set | frozenset):
                stack.extend(((*where, index), child) for index, child in enumerate(item))
        return ok

    def items(self, section: str, raw: list[Any], model: type[ItemT]) -> list[tuple[int, ItemT]]:
        valid: list[tuple[int, ItemT]] = []
        for index, item in enumerate(raw):
            if not self.storable((section, index), item):
                continue
            try:
                valid.append((index, model.model_validate(item)))
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    loc = (section, index, *error["loc"])
                    self.add(loc, schema_message(error, model))
        return valid


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
            f"(account_roles is optional); got {describe(data)}",
        )
        raise MappingFileInvalid(check.errors)
    for key in data:
        if isinstance(key, str) and unsafe_character(key) is not None:
            check.add((), f"section name {key!r} contains a character that cannot be stored")
        elif key not in SECTIONS:
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
            check.add((section,), f"section {section!r} must be a list, got {describe(value)}")
            value = []
        raw[section] = value

    bus = check.items("business_units", raw["business_units"], BusinessUnitItem)
    accounts = check.items("accounts", raw["accounts"], AccountItem)
    roles = check.items("roles", raw["roles"], RoleItem)
    account_roles = check.items("account_roles", raw["account_roles"], AccountRoleItem)
    mappings = check.items("mappings", raw["mappings"], MappingItem)

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
                canary=account.canary,
            ),
        )

    role_rows = []
    for index, role in roles:
        loc = ("roles", index)
        duplicate((*loc, "name"), "role", role.name, f"duplicate role {role.name!r}")
        for env, arns in role.policies.items():
            _no_repeats(check, (*loc, "policies", env), arns, "policy")
        if role.max_auth_age_minutes is not None and not role.require_mfa:
            check.add(
                (*loc, "max_auth_age_minutes"),
                "max_auth_age_minutes applies only with require_mfa: true "
                "(it bounds the age of the MFA sign-in)",
            )
        role_rows.append(
            RoleRow(
                role.name,
                role.description,
                role.privileged,
                timedelta(minutes=role.max_session_minutes),
                canonical_policies(role.policies),
                require_mfa=role.require_mfa,
                max_auth_age=None
                if role.max_auth_age_minutes is None
                else timedelta(minutes=role.max_auth_age_minutes),
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
        minutes = item.max_grant_minutes
        if minutes is None and item.access in (Access.ELIGIBLE.value, Access.BREAK_GLASS.value):
            minutes = DEFAULT_MAX_GRANT_MINUTES
        row = MappingRow(
            group=item.group,
            role=item.role,
            business_unit=item.business_unit,
            access=item.access,
            # Sorted as GroupMapping.clean() wants, so equal scopes meet in the unique index.
            environments=tuple(sorted(set(item.environments))),
            accounts=tuple(sorted(set(item.accounts))),
            max_grant=None if minutes is None else timedelta(minutes=minutes),
            approver_groups=tuple(sorted(set(item.approver_groups))),
        )
        for field, fault in row_faults(row).items():
            check.add((*loc, _ITEM_KEYS.get(field, field)), fault)
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


def _unbuildable_value(root: yaml.Node) -> MappingError:
    """The first tagged scalar whose value cannot be built, as a fault with its line."""
    constructor = yaml.SafeLoader("")
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                constructor.construct_object(node)
            except Exception:  # any failure is the fault being looked for
                return MappingError(
                    node.start_mark.line + 1,
                    "",
                    f"the value {node.value[:60]!r} cannot be read as {node.tag.rsplit(':', 1)[-1]}"
                    " (remove the explicit tag or fix the value)",
                )
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in reversed(node.value):
                stack.extend((value_node, key_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return MappingError(None, "", "a value with an explicit tag cannot be read")


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
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            # An explicit tag PyYAML cannot build (`!!int sixty`, `!!bool maybe`,
            # `!!timestamp 2026-13-45`) raises whatever the tag's constructor raises.
            raise MappingFileInvalid([_unbuildable_value(root)]) from exc
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
