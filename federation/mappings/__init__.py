"""Mapping documents (SPEC §3.3): parse, validate, plan, apply, export and roll back.

A mapping document is the complete desired state of the five mapping tables: business units,
accounts, logical roles, account roles and group mappings. Anything not in it is removed.

Every change to those tables goes through ``apply_document()``, which writes a new
``MappingVersion`` in the same transaction: that number is what invalidates the per-process
entitlement memo (``federation/entitlements/resolve.py``), and what rollback restores from.
"""

from federation.mappings.access_diff import AccessDiff, AccessItem
from federation.mappings.apply import ApplyResult, Source, apply_document, rollback_to_version
from federation.mappings.document import MappingDocument
from federation.mappings.errors import (
    MappingConflict,
    MappingError,
    MappingFileInvalid,
    RemovalRefused,
    VersionNotFound,
)
from federation.mappings.parsing import document_from_data, parse_document
from federation.mappings.plan import (
    DocumentData,
    Plan,
    RowChange,
    plan_change,
    plan_document,
)
from federation.mappings.state import (
    dump_document_yaml,
    export_document,
    get_current_version,
    get_version_document,
)

__all__ = [
    "AccessDiff",
    "AccessItem",
    "ApplyResult",
    "DocumentData",
    "MappingConflict",
    "MappingDocument",
    "MappingError",
    "MappingFileInvalid",
    "Plan",
    "RemovalRefused",
    "RowChange",
    "Source",
    "VersionNotFound",
    "apply_document",
    "document_from_data",
    "dump_document_yaml",
    "export_document",
    "get_current_version",
    "get_version_document",
    "parse_document",
    "plan_change",
    "plan_document",
    "rollback_to_version",
]
