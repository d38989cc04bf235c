"""What both sign-in protocols share: the verified identity, the refusal, and the rules every
protocol must apply the same way (which IdP a URL names, where the browser may go afterwards).

Protocol adapters (``saml.py``, ``saml_response.py``, ``oidc.py``) hand back a
``VerifiedIdentity`` or raise ``SignInRefused``; ``signin.py`` turns either into a response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.http import url_has_allowed_host_and_scheme

from federation.idp.mfa import MfaFacts
from federation.models import IdentityProvider
from federation.refusals import Refused


class SignInRefused(Refused):
    """A refused sign-in, table-driven: ``SignInRefused(message, code="saml.bad_signature")``.

    ``code`` is the stable reason of the audit log; the message is what the person reads. Neither
    may carry an assertion, a token or a secret.
    """

    code = "signin.refused"
    status = 403
    title = "Sign-in refused"


@dataclass(frozen=True)
class VerifiedIdentity:
    """What a protocol adapter vouches for after full validation."""

    idp: IdentityProvider
    subject: str  # the IdP's immutable id (persistent NameID, OIDC sub / oid): the person's key
    email: str
    groups: tuple[str, ...]
    manager: str = ""
    auth_context: Mapping[str, Any] = field(default_factory=dict)
    # Whether the IdP vouches for the address (OIDC ``email_verified: true``); only a vouched
    # address may link this identity to an existing person (federation/idp/signin.py).
    email_verified: bool = True
    # MFA and the authentication time as the IdP asserted them (federation/idp/mfa.py).
    mfa: MfaFacts = field(default_factory=lambda: MfaFacts(False, (), None))


@dataclass(frozen=True)
class SingleUse:
    """A protocol's single-use record (a SAML AuthnRequest consumed, an assertion id stored):
    one statement that must change exactly one row, else the sign-in is refused with
    ``refusal`` and nothing is written. Run by ``signin.complete_sign_in`` inside the sign-in
    transaction; the database's conditional UPDATE or unique key is the arbiter."""

    sql: str
    params: tuple[Any, ...]
    refusal: SignInRefused


def groups_from(values: Sequence[Any] | str | None) -> tuple[str, ...]:
    """Normalise a groups attribute/claim (one value or many) to a tuple of non-empty names."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(sorted({str(v).strip() for v in values if str(v).strip()}))


def safe_next(candidate: str | None) -> str:
    """Where to send the browser after sign-in: a local absolute path, or the portal ("/").

    One rule for every protocol. Absolute URLs are refused even for our own host: the host a
    request names is the client's say, and a local path is all a sign-in link ever needs.
    """
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return "/"
    if not url_has_allowed_host_and_scheme(candidate, allowed_hosts=None, require_https=False):
        return "/"
    if any(ch in candidate for ch in "\\\r\n\t\x00"):
        return "/"
    return candidate


_UNKNOWN_IDP = {
    IdentityProvider.Protocol.SAML: "There is no SAML sign-in with this name.",
    IdentityProvider.Protocol.OIDC: "There is no OpenID Connect sign-in with this name.",
}


def load_idp(slug: str, protocol: IdentityProvider.Protocol) -> IdentityProvider:
    """The enabled IdP ``slug`` of this protocol. Raises ``SignInRefused`` (``<protocol>.
    unknown_idp``, 404) for an unknown, disabled or other-protocol one; the views audit it."""
    protocol = IdentityProvider.Protocol(protocol)
    idp = IdentityProvider.objects.filter(slug=slug, protocol=protocol, enabled=True).first()
    if idp is None:
        raise SignInRefused(
            _UNKNOWN_IDP[protocol], code=f"{protocol.value}.unknown_idp", status=404
        )
    return idp
