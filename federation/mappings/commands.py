"""How a management command (``import_mappings``, ``rollback_mappings``) lands a planned change.

The two-person rule of the web editor holds on the command line too (issue 20): a change that
``federation.mappings.sensitivity`` calls sensitive is not applied by the person at the shell
alone. It becomes a draft under the name of the admin given with ``--as``, which another admin
applies on /mappings/, or it is applied at once with ``--emergency`` and a reason, both recorded
on the audit event. A change that is not sensitive applies at once, as before. The first load
(no mapping version yet) applies at once: no admin has signed in yet who could propose or
approve a draft.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.management.base import CommandParser
from django.db.models import Q

from federation.mappings.apply import ApplyResult
from federation.mappings.document import MappingDocument
from federation.mappings.drafts import propose_change
from federation.mappings.plan import Plan
from federation.models import DraftKind, MappingDraft, User
from federation.permissions import is_admin
from federation.refusals import Refused


class CommandRefused(Refused):
    """A command's change that cannot land as asked; nothing was applied or proposed."""

    code = "mapping_command_refused"
    status = 400


@dataclass(frozen=True)
class Landing:
    """What became of the change: a new version (``result``) or an open draft (``draft``)."""

    message: str
    result: ApplyResult | None = None
    draft: MappingDraft | None = None


def add_landing_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--as",
        dest="as_admin",
        default="",
        metavar="ADMIN",
        help="propose the change as a draft by this administrator (username or email) instead "
        "of applying it; a sensitive change needs this or --emergency",
    )
    parser.add_argument(
        "--emergency",
        action="store_true",
        help="apply a sensitive change without a second administrator (needs --reason; "
        "recorded on the audit event)",
    )


def needs_second_admin(plan: Plan) -> bool:
    return (
        bool(plan.sensitive_because)
        and settings.MAPPING_CHANGES_NEED_SECOND_ADMIN
        and plan.base_version > 0
    )


def find_admin(name: str) -> User:
    """The admin identity ``--as`` names: a username, or an email address only one admin
    identity holds. Raises CommandRefused naming the fault."""
    found = list(User.objects.filter(Q(username=name) | Q(email__iexact=name)).order_by("pk"))
    exact = [user for user in found if user.username == name]
    admins = [user for user in (exact or found) if is_admin(user)]
    if not found:
        raise CommandRefused(
            f"--as {name!r}: no such person (an administrator's username or email address, as "
            "shown on /mappings/ after they signed in once)."
        )
    if not admins:
        raise CommandRefused(f"--as {name!r} is not an administrator.")
    if len(admins) > 1:
        raise CommandRefused(
            f"--as {name!r} names {len(admins)} administrator identities; give the username."
        )
    return admins[0]


def land_change(
    document: MappingDocument,
    plan: Plan,
    *,
    apply: Callable[[bool], ApplyResult],
    kind: DraftKind,
    summary: str,
    proposer: str,
    emergency: bool,
    reason: str,
    now: datetime,
) -> Landing:
    """Apply ``document`` (planned as ``plan``) through ``apply(emergency)``, or store it as a
    draft proposed by the admin named ``proposer``, by the rule in the module docstring.

    ``--as`` always makes a draft, sensitive or not. Raises CommandRefused (a sensitive change
    with neither ``--as`` nor ``--emergency``, both at once, an emergency without a reason, an
    unknown or non-admin proposer) and whatever proposing or applying raises."""
    if proposer and emergency:
        raise CommandRefused("Give either --as (propose a draft) or --emergency, not both.")
    if emergency and not reason.strip():
        raise CommandRefused("--emergency needs --reason: say why this cannot wait for review.")
    if proposer:
        draft = propose_change(
            document,
            actor=find_admin(proposer),
            kind=kind,
            summary=summary,
            reason=reason,
            now=now,
            plan=plan,
        )
        who = "another administrator" if draft.needs_approval else "an administrator"
        return Landing(
            f"Proposed as draft #{draft.pk} (nothing applied yet): {who} applies it at "
            f"{settings.BASE_URL}/mappings/drafts/{draft.pk}/",
            draft=draft,
        )
    if needs_second_admin(plan) and not emergency:
        raise CommandRefused(
            "Nothing applied: this change is sensitive and needs a second administrator. "
            "Propose it as a draft with --as YOUR_ADMIN_USERNAME --reason WHY (another admin "
            'applies it on /mappings/), or apply it now with --emergency --reason "WHY" '
            "(recorded on the audit event)."
        )
    result = apply(emergency and needs_second_admin(plan))
    return Landing(result.message, result=result)
