"""The AuthnRequests this service sent and the assertions it consumed (SECURITY.md §1): which
request a SAML response answers, whether this browser started it, single use, and forgetting
what can no longer matter. ``saml_response.validate_response`` calls these; nothing here parses
a response."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from django.db import connection, transaction

from federation import rawsql
from federation.idp.identity import SignInRefused, SingleUse
from federation.idp.saml import browser_binding
from federation.models import IdentityProvider, SamlAuthnRequest, SamlConsumedAssertion


def _refused(code: str, message: str) -> SignInRefused:
    return SignInRefused(message, code=code)


def pending_login(slug: str, relay_state: str | None) -> SamlAuthnRequest | None:
    """The AuthnRequest a response's RelayState names, with its IdP (enabled, SAML, ``slug``),
    in one read: the ACS's first statement, written once (``federation.rawsql``). None when
    there is none; the caller then loads the IdP alone (``identity.load_idp``) to refuse an
    unknown one as such."""
    if not relay_state:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_PENDING_LOGIN, [relay_state, slug, IdentityProvider.Protocol.SAML.value])
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(SamlAuthnRequest._meta.concrete_fields)
    pending = rawsql.instance(SamlAuthnRequest, row[:width])
    pending.idp = rawsql.instance(IdentityProvider, row[width:])
    return pending


_PENDING_LOGIN = (
    f"SELECT {rawsql.columns(SamlAuthnRequest, 'r')}, {rawsql.columns(IdentityProvider, 'i')} "  # noqa: S608
    f"FROM {SamlAuthnRequest._meta.db_table} r JOIN {IdentityProvider._meta.db_table} i "
    "ON i.id = r.idp_id "
    "WHERE r.relay_state = %s AND i.slug = %s AND i.protocol = %s AND i.enabled"
)


def pending_request(
    idp: IdentityProvider,
    relay_state: str,
    browser_secret: str | None,
    now: datetime,
    found: SamlAuthnRequest | None,
) -> SamlAuthnRequest:
    pending = found or SamlAuthnRequest.objects.filter(relay_state=relay_state).first()
    if pending is None or pending.idp_id != idp.pk or pending.relay_state != relay_state:
        raise _refused(
            "saml.unsolicited",
            "This sign-in response does not answer a sign-in started here. Please sign in again.",
        )
    # Login CSRF: a response the attacker got for their own login, posted from the victim's
    # browser, must not sign the victim in as the attacker. Checked before anything about the
    # request's state is told to a browser that did not start it.
    presented = browser_binding(browser_secret) if browser_secret else ""
    if not pending.browser_binding or not hmac.compare_digest(presented, pending.browser_binding):
        raise _refused(
            "saml.other_browser",
            "This sign-in response does not answer a sign-in started in this browser. "
            "Please sign in again.",
        )
    if pending.consumed_at is not None:
        raise _refused("saml.replay", "This sign-in response was already used.")
    if pending.expires_at <= now:
        raise _refused("saml.request_expired", "The sign-in took too long. Please sign in again.")
    return pending


def claims_for(
    idp: IdentityProvider,
    pending: SamlAuthnRequest,
    assertion_id: str,
    keep_until: datetime,
    now: datetime,
) -> tuple[SingleUse, SingleUse]:
    """Single use across instances: the conditional UPDATE and the unique insert are the
    arbiters (ON CONFLICT rather than a savepoint: same arbiter, fewer round trips). They run
    inside the sign-in transaction, so a refusal writes nothing."""
    replay = _refused("saml.replay", "This sign-in response was already used.")
    requests = SamlAuthnRequest._meta.db_table
    assertions = SamlConsumedAssertion._meta.db_table
    return (
        SingleUse(
            f"UPDATE {requests} SET consumed_at = %s WHERE id = %s AND consumed_at IS NULL",  # noqa: S608
            (now, pending.pk),
            replay,
        ),
        SingleUse(
            f"INSERT INTO {assertions} (idp_id, assertion_id, not_on_or_after, consumed_at) "  # noqa: S608
            "VALUES (%s, %s, %s, %s) ON CONFLICT (idp_id, assertion_id) DO NOTHING",
            (idp.pk, assertion_id, keep_until, now),
            replay,
        ),
    )


def purge_expired(*, now: datetime) -> int:
    """Forget replay records and AuthnRequests that can no longer matter."""
    with transaction.atomic(durable=True):
        gone, _ = SamlConsumedAssertion.objects.filter(not_on_or_after__lt=now).delete()
        old, _ = SamlAuthnRequest.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    return gone + old
