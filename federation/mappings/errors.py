"""Errors of mapping documents: a fault in a file, and each refusal to plan or apply one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
