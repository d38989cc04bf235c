"""Mapping changes from the web editor: propose as a draft, show its plan, apply (SPEC §4 Changes).

A draft holds the whole document after the change, validated exactly like a file import, and
the plan against the version it was made from. Applying goes through
``federation.mappings.apply_document`` with that base version, so a draft made against an
older state is refused instead of silently undoing someone else's change. A sensitive change
(judged on its effects by ``federation.mappings.sensitivity``: access or approval power in prod
or on a privileged role or ARN, or approval power widened) needs a second admin when
``MAPPING_CHANGES_NEED_SECOND_ADMIN`` is on (the default). Every kind of draft (edit, upload,
rollback) is judged the same way, on the plan against the version it will be applied to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from federation.audit.chain import record_event, record_refusal
from federation.mappings import (
    ApplyResult,
    DocumentData,
    MappingConflict,
    MappingDocument,
    Plan,
    RemovalRefused,
    apply_document,
    document_from_data,
    plan_change,
    plan_document,
)
from federation.models import DraftKind, MappingDraft, MappingVersion, User
from federation.permissions import is_admin
from federation.provisioning.preview import preview_for_draft
from federation.refusals import Refused


class DraftRefused(Refused):
    """A draft action that is not allowed; the message says why in words an admin understands."""

    code = "draft_refused"
    status = 400
    title = "Mapping change refused"


class NotAnAdministrator(DraftRefused):
    code = "not_admin"
    status = 403


class ReasonRequired(DraftRefused):
    code = "reason_required"


class NothingToChange(DraftRefused):
    code = "nothing_to_change"


class SelfApplyRefused(DraftRefused):
    """The author of a sensitive draft tried to apply it (the second-admin rule)."""

    code = "self_apply"
    status = 403


class DraftNotOpen(DraftRefused):
    code = "draft_not_open"
    status = 409


class DraftStale(DraftRefused):
    """The tables moved since the draft was planned; nothing was applied."""

    code = "draft_stale"
    status = 409


class DraftBlocked(DraftRefused):
    """Applying would remove rows that requests or grants still reference."""

    code = "removal_refused"
    status = 409


class RowGone(DraftRefused):
    """The row an edit names was changed or removed meanwhile."""

    code = "row_gone"
    status = 409


class UploadRefused(DraftRefused):
    """An uploaded file that cannot become a draft: too large, not UTF-8, not a valid file."""

    code = "upload_refused"


class UnknownSection(DraftRefused):
    code = "unknown_section"
    status = 404


def propose_change(
    document: MappingDocument,
    *,
    actor: User,
    kind: DraftKind,
    summary: str,
    reason: str,
    now: datetime,
    plan: Plan | None = None,
) -> MappingDraft:
    """Store ``document`` as an open draft with its plan (``plan`` if the caller already made
    it against the state the document was built from). Raises NothingToChange when the
    document equals the tables, DraftRefused when the actor is not an admin."""
    if not is_admin(actor):
        raise NotAnAdministrator("Only administrators can propose mapping changes.")
    if not reason.strip():
        raise ReasonRequired("Say why: a reason is required for every mapping change.")
    plan = plan or plan_document(document)
    if plan.is_empty:
        raise NothingToChange("This change makes no difference: the tables already match it.")
    plan_json = plan.to_json()
    # The IAM roles the control loop will create or delete once this applies (issue #13).
    plan_json["iam_roles"] = preview_for_draft(document)
    because = list(plan.sensitive_because)
    with transaction.atomic(durable=True):
        draft = MappingDraft.objects.create(
            created_by=actor,
            created_at=now,
            kind=kind,
            summary=summary[:300],
            reason=reason.strip()[:500],
            base_version=plan.base_version,
            document=document.to_dict(),
            plan=plan_json,
            needs_approval=bool(because) and settings.MAPPING_CHANGES_NEED_SECOND_ADMIN,
            sensitive_because=because,
        )
        record_event(
            "mappings.draft_proposed",
            actor=actor,
            target=f"draft:{draft.pk}",
            now=now,
            data={
                "draft": draft.pk,
                "kind": kind,
                "summary": draft.summary,
                "reason": draft.reason,
                "base_version": plan.base_version,
                "counts": plan_json["counts"],
                "needs_approval": draft.needs_approval,
                "sensitive_because": because,
                "rows": plan_json["rows"],
            },
        )
    return draft


@dataclass(frozen=True)
class DraftOutcome:
    draft: MappingDraft
    result: ApplyResult | None


def may_apply(draft: MappingDraft, user: User) -> bool:
    """An open draft can be applied by an admin, and by its author only when not sensitive."""
    return (
        draft.state == MappingDraft.State.OPEN
        and is_admin(user)
        # The author through any of their identities (another IdP, same person): not a second admin.
        and not (draft.needs_approval and draft.created_by.is_same_person(user))
    )


def _claim(draft_id: int, *, actor: User, now: datetime) -> MappingDraft:
    """Move an open draft to 'applying' exactly once (concurrent clicks: one wins).

    A refusal (not open, or the author's own sensitive draft) is audited and raised after the
    audit event has committed, so an attempt to bypass the two-person rule leaves a trace.
    """
    refusal: DraftRefused | None = None
    with transaction.atomic(durable=True):
        draft = MappingDraft.objects.select_for_update().get(pk=draft_id)
        if draft.state != MappingDraft.State.OPEN:
            refusal = DraftNotOpen(
                f"Draft #{draft.pk} is {draft.state}; only open drafts can be applied."
            )
        elif not may_apply(draft, actor):  # admin was checked already: only self-approval left
            refusal = SelfApplyRefused(
                "This change is sensitive and needs a second administrator: you cannot approve "
                "your own draft."
            )
        if refusal is not None:
            record_refusal(
                "mappings.draft_refused",
                refusal,
                actor=actor,
                target=f"draft #{draft.pk}",
                now=now,
                data={"draft_id": draft.pk, "action": "apply", "state": draft.state},
            )
        else:
            draft.state = MappingDraft.State.APPLYING
            draft.decided_by = actor
            draft.decided_at = now
            draft.save(update_fields=["state", "decided_by", "decided_at"])
    if refusal is not None:
        raise refusal
    return draft


def apply_draft(draft_id: int, *, actor: User, comment: str = "", now: datetime) -> DraftOutcome:
    """Apply an open draft as a new mapping version (second admin for sensitive drafts).

    Raises DraftRefused (not admin, self-apply, not open) and leaves the draft open; a draft
    whose base version moved becomes 'stale' and nothing is applied.
    """
    if not is_admin(actor):
        raise NotAnAdministrator("Only administrators can apply mapping changes.")
    draft = _claim(draft_id, actor=actor, now=now)
    try:
        document = document_from_data(draft.document)
        result = apply_document(
            document,
            actor=actor,
            source=MappingVersion.Source.UI,
            reason=f"draft #{draft.pk}: {draft.reason}",
            base_version=draft.base_version,
            now=now,
        )
    except MappingConflict as exc:
        _finish(draft, MappingDraft.State.STALE, actor=actor, comment=exc.message[:500], now=now)
        raise DraftStale(
            f"The tables changed since this draft was made (it was planned against version "
            f"{draft.base_version}). Nothing was applied; make the change again."
        ) from exc
    except RemovalRefused as exc:
        _finish(draft, MappingDraft.State.OPEN, actor=None, comment="", now=now)
        raise DraftBlocked(exc.message, detail=exc.detail) from exc
    except Exception:
        _finish(draft, MappingDraft.State.OPEN, actor=None, comment="", now=now)
        raise
    _finish(
        draft,
        MappingDraft.State.APPLIED,
        actor=actor,
        comment=comment,
        now=now,
        version=result.version,
    )
    return DraftOutcome(draft=draft, result=result)


def _finish(
    draft: MappingDraft,
    state: MappingDraft.State,
    *,
    actor: User | None,
    comment: str,
    now: datetime,
    version: int | None = None,
) -> None:
    with transaction.atomic(durable=True):
        draft.state = state
        draft.decided_by = actor
        draft.decided_at = now if actor else None
        draft.decision_comment = comment[:500]
        draft.applied_version = version
        draft.save(
            update_fields=[
                "state",
                "decided_by",
                "decided_at",
                "decision_comment",
                "applied_version",
            ]
        )
        if actor is not None:
            record_event(
                f"mappings.draft_{state}",
                actor=actor,
                target=f"draft:{draft.pk}",
                now=now,
                data={"draft": draft.pk, "version": version, "comment": comment[:500]},
            )


def close_draft(
    draft_id: int, *, actor: User, reject: bool, comment: str = "", now: datetime
) -> MappingDraft:
    """Reject (another admin) or discard (its author) an open draft."""
    if not is_admin(actor):
        raise NotAnAdministrator("Only administrators can decide mapping changes.")
    with transaction.atomic(durable=True):
        draft = MappingDraft.objects.select_for_update().get(pk=draft_id)
        if draft.state != MappingDraft.State.OPEN:
            raise DraftNotOpen(f"Draft #{draft.pk} is {draft.state}; it can no longer change.")
        state = MappingDraft.State.REJECTED if reject else MappingDraft.State.DISCARDED
        draft.state = state
        draft.decided_by = actor
        draft.decided_at = now
        draft.decision_comment = comment[:500]
        draft.save(update_fields=["state", "decided_by", "decided_at", "decision_comment"])
        record_event(
            f"mappings.draft_{state}",
            actor=actor,
            target=f"draft:{draft.pk}",
            now=now,
            data={"draft": draft.pk, "comment": comment[:500]},
        )
    return draft


SECTIONS_EDITABLE = ("mappings", "accounts")


def item_key(section: str, item: dict[str, Any]) -> tuple[Any, ...]:
    """The natural key of a document item: what makes a row 'the same row' across edits."""
    if section == "accounts":
        return (item.get("id"),)
    return (
        item.get("group"),
        item.get("role"),
        item.get("business_unit"),
        tuple(sorted(item.get("environments") or ())),
        tuple(sorted(item.get("accounts") or ())),
    )


def propose_edit(
    section: str,
    *,
    actor: User,
    old_key: tuple[Any, ...] | None,
    new_item: dict[str, Any] | None,
    summary: str,
    reason: str,
    now: datetime,
) -> MappingDraft:
    """Propose adding (no old_key), changing, or removing (no new_item) one row.

    The current tables are exported, the one row is changed, and the whole document is
    validated like a file import: MappingFileInvalid names each fault. Raises DraftRefused when
    the row to change no longer exists.
    """
    if section not in SECTIONS_EDITABLE:
        raise UnknownSection(f"Unknown section {section!r}.")

    def change(data: DocumentData) -> None:
        items = data[section]
        if old_key is not None:
            index = next(
                (i for i, it in enumerate(items) if item_key(section, it) == old_key), None
            )
            if index is None:
                raise RowGone("That row no longer exists: someone changed the tables meanwhile.")
            del items[index]
        if new_item is not None:
            items.append(new_item)

    # One read of the tables: the edit and its plan see the same state (and base version).
    document, plan = plan_change(change)
    return propose_change(
        document,
        actor=actor,
        kind=DraftKind.EDIT,
        summary=summary,
        reason=reason,
        now=now,
        plan=plan,
    )
