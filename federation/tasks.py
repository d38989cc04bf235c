"""Celery tasks of the federation app: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from federation.audit import checkpoint, sequencer
from federation.idp import saml_metadata, saml_requests


@shared_task(name="federation.refresh_saml_metadata")  # type: ignore[untyped-decorator]
def refresh_saml_metadata() -> int:
    """Refresh every SAML IdP registered from a metadata URL (keeps the last good on failure)."""
    return saml_metadata.refresh_all_metadata(now=timezone.now())


@shared_task(name="federation.purge_saml_replay_cache")  # type: ignore[untyped-decorator]
def purge_saml_replay_cache() -> int:
    return saml_requests.purge_expired(now=timezone.now())


@shared_task(name="federation.sequence_audit_events")  # type: ignore[untyped-decorator]
def sequence_audit_events() -> int:
    """Give committed audit events their place in the chain (returns 0 if another sequencer
    holds the lock; docs/audit.md)."""
    return sequencer.sequence_pending()


@shared_task(name="federation.audit_checkpoint_when_due")  # type: ignore[untyped-decorator]
def audit_checkpoint_when_due() -> str:
    """Sign and publish the audit chain head when a checkpoint is due (docs/audit.md)."""
    published = checkpoint.checkpoint_when_due(now=timezone.now())
    return published.name if published else ""
