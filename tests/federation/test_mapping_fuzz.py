"""The mapping parser under mutated documents (issue 12 §8): any text is either a document or
MappingFileInvalid, never another exception; and a document the parser (the dry run) accepts
is one the import can store."""

from __future__ import annotations

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.mappings import MappingFileInvalid, apply_document, parse_document
from federation.mappings.document import MappingDocument
from tests.mapping_samples import PB_CLOUD_ENG_DEV, mapping_yaml

BASE = mapping_yaml([PB_CLOUD_ENG_DEV])

# Pieces an attacker (or a typo) puts into a mapping file: explicit tags, escapes the database
# cannot store, anchors, flow and block syntax, odd scalars.
FRAGMENTS = [
    "!!int ",
    "!!bool ",
    "!!float ",
    "!!timestamp ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!str ",
    "!!null ",
    "!!python/name:os.system ",
    "sixty",
    "maybe",
    "2026-13-45",
    "2026-01-01 99:00",
    '"\\0"',
    '"\\ud800"',
    '"\\x00"',
    "&a ",
    "*a",
    "[",
    "]",
    "{",
    "}",
    "? ",
    "- ",
    ": ",
    ",",
    "\n",
    "\n  ",
    "'",
    '"',
    "#",
    "\t",
    "|",
    ">",
    "~",
    ".inf",
    "0x",
    "1e400",
    "0o777",
    "111111111111",
    "prod",
    "eligible",
    "max_grant_minutes: 99999999999999999999",
    "\ufeff",
    "\u2028",
]

_text = st.text(st.characters(codec="utf-8"), max_size=8)
_fragment = st.sampled_from(FRAGMENTS) | _text


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = BASE
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + draw(st.integers(0, 12)))))
        text = text[:start] + draw(_fragment) + text[end:]
    return text


def _parse(text: str) -> MappingDocument | None:
    try:
        return parse_document(text)
    except MappingFileInvalid:
        return None


def _store(document: MappingDocument) -> None:
    """What the real import does: the database must accept what the parser (the dry run) did.
    The test's transaction rolls every example back at its end."""
    apply_document(document, actor="fuzz", source="import", now=timezone.now())


_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(mutated())
def test_a_mutated_file_is_a_document_or_a_list_of_faults(text: str) -> None:
    _parse(text)


_FREE_TEXT = {
    "name": ("name: Data Warehouse", "name: {}"),
    "description": ("name: cloud-eng,", "name: cloud-eng, description: {},"),
}


@pytest.mark.django_db
@_SETTINGS
@given(field=st.sampled_from(sorted(_FREE_TEXT)), value=st.text(max_size=30))
def test_free_text_the_parser_accepts_is_stored_by_the_import(field: str, value: str) -> None:
    old, new = _FREE_TEXT[field]
    document = _parse(BASE.replace(old, new.format(_quoted(value)), 1))
    if document is not None:
        _store(document)


def _quoted(value: str) -> str:
    # A YAML double-quoted scalar with every character escaped, NUL and lone surrogates too.
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in value) + '"'
