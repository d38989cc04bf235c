"""Forms of the request and approval pages; they validate shape, services decide the rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from access_requests.models import Approval
from federation.entitlements.resolve import Entitlement
from federation.models import MIN_GRANT_MINUTES


def target_value(entitlement: Entitlement) -> str:
    return f"{entitlement.account_id}/{entitlement.role}"


class RequestForm(forms.Form):
    target = forms.ChoiceField(label="Account and role")
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)",
        min_value=MIN_GRANT_MINUTES,
        max_value=12 * 60,
        initial=60,
        help_text=(
            f"At least {MIN_GRANT_MINUTES} minutes. New AWS sessions can be started until 15 "
            "minutes before the grant ends: AWS issues no session shorter than 15 minutes, and "
            "no session outlives its grant."
        ),
    )
    justification = forms.CharField(
        label="Justification", widget=forms.Textarea(attrs={"rows": 3}), max_length=2000
    )
    ticket = forms.CharField(label="Ticket (optional)", required=False, max_length=200)

    def __init__(self, *args: Any, requestable: Sequence[Entitlement], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (
                target_value(e),
                f"{e.account_alias} ({e.account_id}, {e.environment}) · {e.role}"
                f" · up to {int(e.max_grant.total_seconds() // 60) if e.max_grant else 0} min",
            )
            for e in requestable
        ]
        field = self.fields["target"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def clean_justification(self) -> str:
        value = str(self.cleaned_data["justification"]).strip()
        if not value:
            raise forms.ValidationError("A justification is required.")
        return value

    def account_and_role(self) -> tuple[str, str]:
        account_id, _, role = str(self.cleaned_data["target"]).partition("/")
        return account_id, role


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[(Approval.Decision.APPROVE, "Approve"), (Approval.Decision.DENY, "Deny")]
    )
    comment = forms.CharField(label="Comment", required=False, max_length=2000)


class RevokeForm(forms.Form):
    reason = forms.CharField(label="Reason", required=False, max_length=500)
