"""Errors of mapping documents: a fault in a file, and each refusal to plan or apply one.

Each refusal is a ``federation.refusals.Refused`` with a stable ``code``: commands print its
message, the editor shows it in the form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from federation.refusals import Refused

# A command prints at most this many faults (MappingFileInvalid.errors keeps them all).
SHOWN_ERRORS = 100


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


class MappingFileInvalid(Refused):
    """The document is not valid; ``errors`` lists every fault found, in line order."""

    code = "mapping_file_invalid"
    status = 400
    title = "Mapping file invalid"

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


class MappingConflict(Refused):
    """The tables moved under the caller (another apply won) or the database refused the change."""

    code = "mapping_conflict"
    status = 409
    title = "Mapping tables changed"


class RemovalRefused(Refused):
    """The document removes rows that access requests or grants still reference."""

    code = "removal_refused"
    status = 409
    title = "Rows still referenced"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "refusing to remove rows that are still referenced (nothing was changed):\n"
            + "\n".join(f"  {problem}" for problem in self.problems),
            detail={"problems": list(self.problems)},
        )


class VersionNotFound(Refused):
    """No mapping version has that number."""

    code = "version_not_found"
    status = 404
    title = "No such mapping version"
