"""Two stored mapping versions side by side (/mappings/versions/compare/): which rows one has
that the other has not, and which fields of a row differ. Read-only; rows are matched by their
natural key, as the plan and the editor match them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from federation.mappings.drafts import item_key

# Section -> how a row of it is named and matched.
_KEYS: dict[str, tuple[str, ...]] = {
    "business_units": ("slug",),
    "accounts": ("id",),
    "roles": ("name",),
    "account_roles": ("account", "role"),
}
_TITLES = {
    "business_units": "Business units",
    "accounts": "Accounts",
    "roles": "Roles",
    "account_roles": "Account roles",
    "mappings": "Mappings",
}


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class RowDiff:
    label: str
    action: str  # "add" | "remove" | "change"
    fields: tuple[FieldChange, ...] = ()
    item: dict[str, Any] | None = None


@dataclass(frozen=True)
class SectionDiff:
    title: str
    rows: tuple[RowDiff, ...]


def _key(section: str, item: dict[str, Any]) -> tuple[Any, ...]:
    if section == "mappings":
        return item_key("mappings", item)
    return tuple(item.get(name) for name in _KEYS[section])


def _label(section: str, item: dict[str, Any]) -> str:
    if section == "mappings":
        scope = ", ".join([*(item.get("environments") or ()), *(item.get("accounts") or ())])
        where = f" ({scope})" if scope else ""
        return f"{item.get('group')} → {item.get('role')} in {item.get('business_unit')}{where}"
    if section == "accounts":
        return f"{item.get('alias')} ({item.get('id')})"
    return " / ".join(str(item.get(name)) for name in _KEYS[section])


def compare_documents(old: dict[str, Any], new: dict[str, Any]) -> tuple[SectionDiff, ...]:
    """What changes from ``old`` to ``new`` (two stored documents), section by section; only
    sections with a difference are returned."""
    sections = []
    for section, title in _TITLES.items():
        before = {_key(section, item): item for item in old.get(section) or ()}
        after = {_key(section, item): item for item in new.get(section) or ()}
        rows: list[RowDiff] = []
        for key in sorted(before.keys() | after.keys(), key=repr):
            was, now = before.get(key), after.get(key)
            if was is None and now is not None:
                rows.append(RowDiff(_label(section, now), "add", item=now))
            elif now is None and was is not None:
                rows.append(RowDiff(_label(section, was), "remove", item=was))
            elif was is not None and now is not None and was != now:
                names = sorted(was.keys() | now.keys())
                fields = tuple(
                    FieldChange(name, was.get(name), now.get(name))
                    for name in names
                    if was.get(name) != now.get(name)
                )
                rows.append(RowDiff(_label(section, now), "change", fields=fields))
        if rows:
            sections.append(SectionDiff(title, tuple(rows)))
    return tuple(sections)
