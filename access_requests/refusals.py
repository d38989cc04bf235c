"""Why an action on a request or grant was refused: one ``Refused`` subclass per refusal (STYLE:
named for the refusal). Services audit them (``record_refusal``) and raise them; views show
``refusal.message`` to the person. The codes are in audit logs: they keep their values."""

from __future__ import annotations

from federation.refusals import Refused


class RequestRefused(Refused):
    """A refused action on a request or a grant."""

    code = "refused"
    status = 400
    title = "Request refused"


class NotFound(RequestRefused):
    """No such request or grant *for this person*: the id does not exist, or it is outside their
    reach (another business unit). Both get this same answer, status and audit shape, so an id
    never tells someone who may not see it whether it exists, its account or its state."""

    code = "not_found"
    status = 404
    title = "Not found"


class RequestNotFound(NotFound):
    pass


class GrantNotFound(NotFound):
    pass


class JustificationRequired(RequestRefused):
    code = "justification_required"


class NotEligible(RequestRefused):
    code = "not_eligible"
    status = 403


class AlreadyGranted(RequestRefused):
    code = "already_granted"
    status = 409


class DurationOutOfBounds(RequestRefused):
    code = "duration_out_of_bounds"


class DuplicateRequest(RequestRefused):
    code = "duplicate_request"
    status = 409


class RequestNotPending(RequestRefused):
    code = "request_not_pending"
    status = 409


class SelfApprovalRefused(RequestRefused):
    code = "self_approval"
    status = 403


class NotAnApprover(RequestRefused):
    code = "not_an_approver"
    status = 403


class AlreadyDecided(RequestRefused):
    code = "already_decided"
    status = 409


class RequesterNotEligible(RequestRefused):
    code = "requester_not_eligible"
    status = 409


class NotTheRequester(RequestRefused):
    code = "not_the_requester"
    status = 403


class GrantNotActive(RequestRefused):
    code = "grant_not_active"
    status = 409
    title = "Revocation refused"


class NotAllowedToRevoke(RequestRefused):
    code = "not_allowed_to_revoke"
    status = 403
    title = "Revocation refused"


class NotBreakGlass(RequestRefused):
    """No break-glass row of the person reaches the (account, role)."""

    code = "not_break_glass"
    status = 403
    title = "Break-glass refused"


class BreakGlassLimitReached(RequestRefused):
    code = "break_glass_limit"
    status = 429
    title = "Break-glass refused"


class SelfReviewRefused(RequestRefused):
    code = "self_review"
    status = 403
    title = "Review refused"


class NotAReviewer(RequestRefused):
    code = "not_a_reviewer"
    status = 403
    title = "Review refused"


class AlreadyReviewed(RequestRefused):
    code = "already_reviewed"
    status = 409
    title = "Review refused"


class NotTheHolder(RequestRefused):
    code = "not_the_holder"
    status = 403
    title = "Ending the grant refused"
