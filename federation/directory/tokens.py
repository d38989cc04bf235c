"""SCIM bearer tokens, one family per IdP (SPEC §3.2 ``scim_token``).

A token is ``fedscim_<prefix>_<secret>``; only its SHA-256 is stored. Creating a new token for an
IdP starts a grace period for the IdP's older tokens (``SCIM_TOKEN_GRACE_HOURS``) so the IdP's
provisioning settings can be switched without a gap; after it, only the newest works. A token
reaches only its own IdP's users and groups: every query in ``service.py`` is scoped by it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from federation.audit.chain import record_event
from federation.models import IdentityProvider, ScimSubject, ScimToken
from federation.refusals import Refused

TOKEN_PREFIX = "fedscim_"  # noqa: S105 - a public marker, not a secret
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class ScimTokenRefused(Refused):
    """No token, or one that is unknown or past its grace period (401, a SCIM error body)."""

    code = "scim.unauthorized"
    status = 401
    title = "SCIM token refused"


class ScimSetupRefused(Refused):
    code = "scim.setup_refused"
    status = 400
    title = "SCIM setup refused"


@dataclass(frozen=True)
class CreatedScimToken:
    token: ScimToken
    plaintext: str  # printed once, never stored
    retiring: int  # older tokens now in their grace period


def digest_of(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def scim_subject_of(idp: IdentityProvider) -> ScimSubject:
    """Which SCIM attribute is this IdP's sign-in subject (``userName`` unless registered)."""
    return ScimSubject(idp.config.get("scim_subject", ScimSubject.USER_NAME))


def create_scim_token(
    idp: IdentityProvider, *, actor: str, now: datetime, subject: ScimSubject | None = None
) -> CreatedScimToken:
    """A new token for ``idp``; older live tokens keep working for the grace period only.

    ``subject`` (first setup only) records which SCIM attribute matches the IdP's sign-in
    subject; changing it once users were provisioned is refused (ScimSetupRefused): they would
    silently become other people.
    """
    grace = timedelta(hours=settings.SCIM_TOKEN_GRACE_HOURS)
    prefix = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic(durable=True):
        idp = IdentityProvider.objects.select_for_update().get(pk=idp.pk)
        if subject is not None and ScimSubject(subject) != scim_subject_of(idp):
            if idp.scim_users.exists():
                raise ScimSetupRefused(
                    f"{idp.slug} already has SCIM users matched on {scim_subject_of(idp)}; "
                    "the subject attribute cannot change."
                )
            idp.config = {**idp.config, "scim_subject": ScimSubject(subject).value}
            idp.save(update_fields=["config"])
        retiring = ScimToken.objects.filter(idp=idp).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now + grace)
        )
        retiring_count = retiring.update(expires_at=now + grace)
        token = ScimToken.objects.create(
            idp=idp,
            prefix=f"{TOKEN_PREFIX}{prefix}",
            digest=digest_of(plaintext),
            created_at=now,
        )
        record_event(
            "scim.token_created",
            actor=actor,
            target=f"idp:{idp.slug}",
            now=now,
            data={
                "idp": idp.slug,
                "prefix": token.prefix,
                "subject_attribute": scim_subject_of(idp).value,
                "older_tokens_retiring": retiring_count,
                "grace_ends_at": (now + grace) if retiring_count else None,
            },
        )
    return CreatedScimToken(token=token, plaintext=plaintext, retiring=retiring_count)


def authenticate_scim_token(authorization: str, *, now: datetime) -> IdentityProvider:
    """The IdP whose live token is in ``Authorization: Bearer ...``. Raises ScimTokenRefused."""
    scheme, _, plaintext = authorization.partition(" ")
    plaintext = plaintext.strip()
    if scheme.lower() != "bearer" or not plaintext.startswith(TOKEN_PREFIX):
        raise ScimTokenRefused("Send this IdP's SCIM token: Authorization: Bearer fedscim_...")
    if len(plaintext) > 200:
        raise ScimTokenRefused("This SCIM token is unknown or retired.")
    digest = digest_of(plaintext)
    token = ScimToken.objects.select_related("idp").filter(digest=digest).first()
    if (
        token is None
        or not hmac.compare_digest(token.digest, digest)
        or (token.expires_at is not None and token.expires_at <= now)
        or not token.idp.enabled
    ):
        raise ScimTokenRefused("This SCIM token is unknown or retired.")
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ScimToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.idp
