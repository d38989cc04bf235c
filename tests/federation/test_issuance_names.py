"""RoleSessionName / SourceIdentity under STS's rules: exact, one-to-one, refused when too long."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from federation.aws.names import IdentityNotExpressible, session_name_for

STS_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")


def _decode(name: str) -> str:
    """The inverse of the encoding: ``=XX`` sequences are UTF-8 bytes."""
    out = bytearray()
    index = 0
    while index < len(name):
        if name[index] == "=":
            out.append(int(name[index + 1 : index + 3], 16))
            index += 3
        else:
            out.extend(name[index].encode())
            index += 1
    return out.decode()


odd_emails = st.one_of(
    st.emails(),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(min_size=0, max_size=40),
        st.text(min_size=0, max_size=30),
    ),
    st.text(max_size=80),
)


@given(odd_emails)
@example("josé@corp.example")
@example("o'brien@corp.example")
@example("a=b@corp.example")
@example("aws:x@corp.example")
@example("a b@corp.example")
@example("a" * 64)
@example("a" * 65)
@example("a")
@example("")
def test_session_names_follow_sts_rules_and_never_collide(identity: str) -> None:
    try:
        name = session_name_for(identity)
    except IdentityNotExpressible:
        return
    assert STS_NAME.match(name)
    assert not name.lower().startswith("aws:")
    # One-to-one: the name gives back exactly this identity, so no two people share one.
    assert _decode(name) == identity


@given(st.from_regex(r"[A-Za-z0-9_+,.@-]{2,64}", fullmatch=True))
def test_names_already_valid_are_used_as_they_are(identity: str) -> None:
    assert session_name_for(identity) == identity


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("ab", "ab"),
        ("a" * 64, "a" * 64),
        ("josé@corp.example", "jos=C3=A9@corp.example"),
        ("a=b@corp.example", "a=3Db@corp.example"),
        ("aws:x", "aws=3Ax"),
    ],
)
def test_examples(identity: str, expected: str) -> None:
    assert session_name_for(identity) == expected


@pytest.mark.parametrize(
    "identity", ["", "a", "a" * 65, "é" * 11, "x" * 60 + "@corp.example", "a\ud800@corp.example"]
)
def test_too_short_or_too_long_is_refused_not_truncated(identity: str) -> None:
    with pytest.raises(IdentityNotExpressible):
        session_name_for(identity)
