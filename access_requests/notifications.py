"""What approvers and requesters are told, by email and by a Slack-compatible webhook.

Called only from tasks (``access_requests.tasks``), after the change they describe has
committed. Both functions raise on delivery failure so Celery retries them; the only state
they write is the outbox's record of who has been reached. Messages carry no secrets: people
follow the link and sign in to act.
"""

from __future__ import annotations

import hashlib
import smtplib
from dataclasses import dataclass
from enum import StrEnum

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.utils import timezone

from access_requests import outbox
from access_requests.approvers import list_admins, list_approvers
from access_requests.models import AccessRequest, Approval


class RequestEvent(StrEnum):
    """What happened to a request, as the tasks carry it (a plain string on the broker)."""

    SUBMITTED = "submitted"
    APPROVAL_RECORDED = "approval_recorded"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    BREAK_GLASS_ACTIVATED = "break_glass_activated"
    BREAK_GLASS_REVIEWED = "break_glass_reviewed"


_SUBJECTS = {
    RequestEvent.SUBMITTED: "Access request #{pk}: {requester} asks for {role} in {account}",
    RequestEvent.APPROVAL_RECORDED: "Access request #{pk}: one approval recorded, more needed",
    RequestEvent.APPROVED: "Access request #{pk} approved: {role} in {account}",
    RequestEvent.DENIED: "Access request #{pk} denied: {role} in {account}",
    RequestEvent.EXPIRED: "Access request #{pk} expired undecided: {role} in {account}",
    RequestEvent.BREAK_GLASS_ACTIVATED: (
        "BREAK-GLASS #{pk}: {requester} took {role} in {account} without approval"
    ),
    RequestEvent.BREAK_GLASS_REVIEWED: "Break-glass #{pk} reviewed: {role} in {account}",
}
# The delivery record of a webhook post (one per effect); never a mail address (no "@").
WEBHOOK_RECIPIENT = "webhook"
_PAST: dict[str, str] = {Approval.Decision.APPROVE: "approved", Approval.Decision.DENY: "denied"}


@dataclass(frozen=True)
class Notice:
    recipients: tuple[str, ...]
    subject: str
    body: str


def build_notice(access_request: AccessRequest, event: str) -> Notice:
    try:
        kind = RequestEvent(event)
    except ValueError:
        raise ValueError(f"unknown notification event {event!r}") from None
    requester = access_request.requester
    account = access_request.account
    fields = {
        "pk": access_request.pk,
        "requester": requester.label,
        "role": access_request.role.name,
        "account": f"{account.alias} ({account.account_id})",
    }
    subject = _SUBJECTS[kind].format(**fields)
    lines = [
        f"Requester: {requester.label}",
        f"Account: {fields['account']}, environment {account.environment}",
        f"Role: {access_request.role.name}",
        f"Duration: {access_request.duration_minutes} minutes",
        f"Justification: {access_request.justification}",
    ]
    if access_request.ticket:
        lines.append(f"Ticket: {access_request.ticket}")
    if kind == RequestEvent.BREAK_GLASS_ACTIVATED:
        return _break_glass_notice(access_request, subject, lines)
    if kind == RequestEvent.BREAK_GLASS_REVIEWED:
        reviewer = access_request.reviewed_by
        lines += [
            "",
            f"Reviewed by {reviewer.label if reviewer else 'someone'}"
            + (f": {access_request.review_comment}" if access_request.review_comment else ""),
        ]
        to_requester: tuple[str, ...] = (requester.email,) if requester.email else ()
        return Notice(to_requester, subject, "\n".join(lines) + "\n")
    if kind == RequestEvent.SUBMITTED:
        people = list_approvers(access_request)
        lines += ["", f"Decide at {settings.BASE_URL}/approvals/"]
        if access_request.unapprovable:
            # Never stuck silently: the admins hear about it and can fix the approver groups.
            people += list_admins()
            lines.append(
                "Warning: fewer people than required can approve this request; "
                "admins, check the approver groups of this account and business unit."
            )
        # Not the requester through any of their identities (an admin twin at another IdP).
        recipients = tuple(
            sorted({u.email for u in people if u.email and not u.is_same_person(requester)})
        )
    else:
        recipients = (requester.email,) if requester.email else ()
        comments = [
            f"{a.approver.label} {_PAST[a.decision]}" + (f": {a.comment}" if a.comment else "")
            for a in access_request.approvals.select_related("approver")
        ]
        lines += ["", f"State: {access_request.state}", *comments]
        lines.append(f"See {settings.BASE_URL}/requests/")
    return Notice(recipients, subject, "\n".join(lines) + "\n")


def break_glass_emails() -> tuple[str, ...]:
    """The addresses of BREAK_GLASS_NOTIFY (its other entries are webhook URLs)."""
    return tuple(item for item in settings.BREAK_GLASS_NOTIFY if "@" in item and "/" not in item)


def break_glass_webhooks() -> tuple[str, ...]:
    """Where a break-glass activation is posted: SLACK_WEBHOOK_URL and the URLs of
    BREAK_GLASS_NOTIFY."""
    urls = [settings.SLACK_WEBHOOK_URL] if settings.SLACK_WEBHOOK_URL else []
    urls += [
        item for item in settings.BREAK_GLASS_NOTIFY if item.startswith(("https://", "http://"))
    ]
    return tuple(dict.fromkeys(urls))


def _break_glass_notice(access_request: AccessRequest, subject: str, lines: list[str]) -> Notice:
    """Every activation reaches the business unit's approvers (never its user) and the security
    contacts at once; the admins too when nobody can review it."""
    requester = access_request.requester
    people = list_approvers(access_request)
    if not people:
        people += list_admins()
    lines += [
        "",
        "This access was granted at once, without approval (break-glass).",
        f"Review it at {settings.BASE_URL}/approvals/ (anyone but its user may), and revoke "
        "the grant there if it was not warranted.",
    ]
    recipients = sorted(
        {u.email for u in people if u.email and not u.is_same_person(requester)}
        | set(break_glass_emails())
    )
    return Notice(tuple(recipients), subject, "\n".join(lines) + "\n")


def _load(request_id: int) -> AccessRequest | None:
    return (
        AccessRequest.objects.select_related(
            "requester", "account__business_unit", "role", "mapping", "reviewed_by"
        )
        .filter(pk=request_id)
        .first()
    )


def send_request_email(request_id: int, event: str, *, effect_id: int | None) -> int:
    """Mail the people concerned about a request; returns how many went out now."""
    access_request = _load(request_id)
    if access_request is None:  # requests are never deleted in service; only a test reset does
        return 0
    return send_notice(build_notice(access_request, event), effect_id=effect_id)


def send_notice(notice: Notice, *, effect_id: int | None) -> int:
    """Mail ``notice`` to its recipients, one message each; returns how many went out now.

    With an outbox ``effect_id``, each recipient reached is recorded at once and skipped on a
    retry, so a refusal for one recipient resends to that one only. Every recipient is tried;
    the first failure is raised afterwards so the task retries the rest.
    """
    done = outbox.delivered_to(effect_id) if effect_id is not None else set()
    pending = [to for to in notice.recipients if to not in done]
    if not pending:
        return 0
    sent = 0
    failure: Exception | None = None
    with get_connection(fail_silently=False) as mail:
        for to in pending:
            # One message per recipient: approvers do not learn each other's addresses.
            message = EmailMessage(notice.subject, notice.body, settings.DEFAULT_FROM_EMAIL, [to])
            try:
                mail.send_messages([message])
            except smtplib.SMTPServerDisconnected:
                raise  # the connection is gone: the retry starts a new one
            except (smtplib.SMTPException, OSError) as exc:
                failure = failure or exc
                continue
            sent += 1
            if effect_id is not None:
                outbox.record_delivery(effect_id, to, now=timezone.now())
    if failure is not None:
        raise failure
    return sent


def post_request_webhook(request_id: int, event: str, *, effect_id: int | None) -> bool:
    """Post a Slack-compatible ``{"text": ...}`` message; False when no webhook is configured or
    this effect already posted it."""
    access_request = _load(request_id)
    if not settings.SLACK_WEBHOOK_URL or access_request is None:
        return False
    return post_notice(build_notice(access_request, event), effect_id=effect_id)


def post_notice(notice: Notice, *, effect_id: int | None) -> bool:
    """Post ``notice`` to the Slack-compatible webhook; False when none is configured or this
    effect already posted it. Raises on a failed post so the task retries."""
    url = settings.SLACK_WEBHOOK_URL
    if not url:
        return False
    if effect_id is not None and WEBHOOK_RECIPIENT in outbox.delivered_to(effect_id):
        return False
    response = requests.post(
        url, json={"text": f"{notice.subject}\n{notice.body}"}, timeout=settings.WEBHOOK_TIMEOUT
    )
    response.raise_for_status()
    if effect_id is not None:
        outbox.record_delivery(effect_id, WEBHOOK_RECIPIENT, now=timezone.now())
    return True


def post_break_glass_webhooks(request_id: int, event: str, *, effect_id: int | None) -> int:
    """Post a break-glass notice to every webhook of ``break_glass_webhooks``; returns how many
    were posted now. Each URL reached is recorded under a digest of it (a webhook URL is a
    secret: it is never stored), so a retry posts only to the ones that failed."""
    access_request = _load(request_id)
    urls = break_glass_webhooks()
    if access_request is None or not urls:
        return 0
    notice = build_notice(access_request, event)
    done = outbox.delivered_to(effect_id) if effect_id is not None else set()
    posted = 0
    failure: Exception | None = None
    for url in urls:
        key = "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]
        if key in done:
            continue
        try:
            response = requests.post(
                url,
                json={"text": f"{notice.subject}\n{notice.body}"},
                timeout=settings.WEBHOOK_TIMEOUT,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            failure = failure or exc
            continue
        posted += 1
        if effect_id is not None:
            outbox.record_delivery(effect_id, key, now=timezone.now())
    if failure is not None:
        raise failure
    return posted
