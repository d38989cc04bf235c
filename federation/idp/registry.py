"""The one path that writes an IdP registration: create or update the row, and audit it.

Each caller decides *what* to store (``saml_metadata.register_saml_idp`` reads metadata,
``oidc_registration.register_oidc_idp`` reads discovery, ``demo.idp.configure_demo_idp`` points
the demo IdP at the development IdP); this module stores it the same way for all of them, under
a row lock, refusing to turn an IdP of one protocol into the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from federation.audit.chain import record_event
from federation.models import IdentityProvider, User
from federation.refusals import Refused


class RegistrationRefused(Refused):
    """An IdP cannot be registered as asked; the message names the fault for an administrator."""

    code = "idp.registration_refused"
    status = 400
    title = "Registration refused"


@dataclass(frozen=True)
class IdpFields:
    """What a registration sets on the row; ``config`` maps the stored config to the new one."""

    entity_id: str
    config: Callable[[dict[str, Any]], dict[str, Any]]
    # None: leave as stored (the model's default on a new row).
    groups_attribute: str | None = None
    email_attribute: str | None = None
    manager_attribute: str | None = None
    display_name: str = ""  # empty: leave as stored
    # None: leave as stored; () stores "the protocol's default" (federation/idp/mfa.py).
    mfa_authn_contexts: tuple[str, ...] | None = None


def save_idp(
    slug: str,
    protocol: IdentityProvider.Protocol,
    fields: IdpFields,
    *,
    event_type: Callable[[bool], str],
    audit_data: Mapping[str, Any],
    actor: User | str,
    now: datetime,
) -> tuple[IdentityProvider, bool]:
    """Create or update IdP ``slug`` of ``protocol`` and audit ``event_type(created)`` with
    ``audit_data`` (plus ``idp`` and ``created``), in one transaction. Returns the row and
    whether it is new.

    Raises ``RegistrationRefused`` when ``slug`` is registered under the other protocol.
    """
    with transaction.atomic(durable=True):
        idp = IdentityProvider.objects.select_for_update().filter(slug=slug).first()
        created = idp is None
        if idp is None:
            idp = IdentityProvider(slug=slug, protocol=protocol)
        elif idp.protocol != protocol:
            raise RegistrationRefused(
                f"identity provider {slug!r} is already a {idp.protocol} identity provider, "
                f"not a {protocol.value} one"
            )
        idp.entity_id = fields.entity_id
        idp.config = fields.config(dict(idp.config or {}))
        idp.display_name = fields.display_name or idp.display_name
        if fields.groups_attribute is not None:
            idp.groups_attribute = fields.groups_attribute
        if fields.email_attribute is not None:
            idp.email_attribute = fields.email_attribute
        if fields.manager_attribute is not None:
            idp.manager_attribute = fields.manager_attribute
        if fields.mfa_authn_contexts is not None:
            idp.mfa_authn_contexts = list(fields.mfa_authn_contexts)
        idp.full_clean()
        idp.save()
        record_event(
            event_type(created),
            actor=actor,
            target=f"idp:{slug}",
            now=now,
            data={"idp": slug, "created": created, **audit_data},
        )
    return idp, created
