"""AWS session naming: RoleSessionName and SourceIdentity from a person, under STS's rules."""

from __future__ import annotations

import re

from federation.refusals import Refused

# What STS accepts in RoleSessionName and SourceIdentity: 2-64 of [\w+=,.@-], \w being ASCII.
_STS_NAME_RE = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+,.@-")


class IdentityNotExpressible(Refused):
    """A person's identity cannot name an AWS session without colliding with someone else's."""

    code = "identity_not_expressible"
    status = 403
    title = "Session refused"


def session_name_for(identity: str) -> str:
    """RoleSessionName / SourceIdentity for an identity (the user's email), under STS's rules.

    An identity made only of allowed characters is used as is. Any other character (and ``=``
    itself) is written as ``=XX`` per UTF-8 byte, like quoted-printable, so the mapping stays
    one-to-one: two people can never end up with the same name. A result outside 2-64
    characters is refused, never truncated (truncation would collide identities).
    """
    if not identity:
        raise IdentityNotExpressible(
            "Your account has no email address, which AWS sessions are named after. "
            "Ask your identity administrator to add one."
        )
    try:
        encoded = "".join(
            char if char in _SAFE_CHARS else "".join(f"={byte:02X}" for byte in char.encode())
            for char in identity
        )
    except UnicodeEncodeError:  # a lone surrogate: not text any IdP should send
        raise IdentityNotExpressible("Your email address is not valid text.") from None
    if not _STS_NAME_RE.fullmatch(encoded) or encoded.lower().startswith("aws:"):
        raise IdentityNotExpressible(
            f"Your email address becomes {len(encoded)} characters as an AWS session name; "
            "AWS allows 2 to 64. It is not shortened, because a shortened name could be "
            "someone else's. Ask an administrator for help."
        )
    return encoded
