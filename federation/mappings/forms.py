"""The mapping editor's forms: one row, one account, a file upload, a reason, a decision.

A valid form becomes a one-row edit of the whole document (``drafts.propose_edit``), which is
then validated like a file import; the row form also holds ``GroupMapping``'s own rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms

from federation.mappings import MappingFileInvalid
from federation.models import (
    MIN_GRANT_MINUTES,
    Access,
    Account,
    BusinessUnit,
    Environment,
    GroupMapping,
    LogicalRole,
    group_mapping_faults,
)

# GroupMapping fields by the names the row form gives them.
_FORM_FIELDS = {"max_grant": "max_grant_minutes"}


def _names(value: str) -> list[str]:
    return sorted({part.strip() for part in value.replace("\n", ",").split(",") if part.strip()})


def _unit_choices() -> list[tuple[str, str]]:
    return [
        (slug, f"{slug} — {name}")
        for slug, name in BusinessUnit.objects.values_list("slug", "name")
    ]


class ReasonField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_length=500,
            label="Reason for this change",
            help_text="Recorded in the audit log and the version history.",
            **kwargs,
        )


class MappingRowForm(forms.Form):
    group = forms.CharField(max_length=256, label="Directory group")
    role = forms.ChoiceField(label="Logical role")
    business_unit = forms.ChoiceField(label="Business unit")
    environments = forms.MultipleChoiceField(
        required=False,
        choices=Environment.choices,
        widget=forms.CheckboxSelectMultiple,
        label="Only these environments (none = all)",
    )
    accounts = forms.CharField(
        required=False, label="Only these account ids (comma-separated; empty = all)"
    )
    access = forms.ChoiceField(choices=Access.choices, label="Access")
    max_grant_minutes = forms.IntegerField(
        required=False,
        min_value=MIN_GRANT_MINUTES,
        max_value=1440,
        label="Max grant (minutes, eligible only)",
    )
    approver_groups = forms.CharField(
        required=False, label="Approver groups for this row (eligible only, comma-separated)"
    )
    reason = ReasonField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [  # type: ignore[attr-defined]
            (r, r) for r in LogicalRole.objects.values_list("name", flat=True)
        ]
        self.fields["business_unit"].choices = _unit_choices()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "access" in data:
            minutes = data.get("max_grant_minutes")
            faults = group_mapping_faults(
                access=data["access"],
                environments=sorted(set(data.get("environments") or [])),
                accounts=_names(data.get("accounts") or ""),
                max_grant=None if minutes is None else timedelta(minutes=minutes),
                approver_groups=_names(data.get("approver_groups") or ""),
            )
            for field, fault in faults.items():
                self.add_error(_FORM_FIELDS.get(field, field), fault)
        return data

    def item(self) -> dict[str, Any]:
        data = self.cleaned_data
        item: dict[str, Any] = {
            "group": data["group"].strip(),
            "role": data["role"],
            "business_unit": data["business_unit"],
            "access": data["access"],
        }
        if data["environments"]:
            item["environments"] = sorted(data["environments"])
        if accounts := _names(data["accounts"]):
            item["accounts"] = accounts
        if data["max_grant_minutes"] is not None:
            item["max_grant_minutes"] = data["max_grant_minutes"]
        if approvers := _names(data["approver_groups"]):
            item["approver_groups"] = approvers
        return item

    @classmethod
    def initial_from(cls, row: GroupMapping) -> dict[str, Any]:
        return {
            "group": row.group,
            "role": row.role.name,
            "business_unit": row.business_unit.slug,
            "environments": row.environments,
            "accounts": ", ".join(row.accounts),
            "access": row.access,
            "max_grant_minutes": int(row.max_grant.total_seconds() // 60)
            if row.max_grant
            else None,
            "approver_groups": ", ".join(row.approver_groups),
        }


class AccountForm(forms.Form):
    id = forms.CharField(max_length=12, label="AWS account id (12 digits)")
    alias = forms.CharField(max_length=63, label="Alias")
    business_unit = forms.ChoiceField(label="Business unit")
    environment = forms.ChoiceField(choices=Environment.choices, label="Environment")
    approvals_required = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10,
        label="Approvals required (empty = 2 for prod, 1 otherwise)",
    )
    approver_groups = forms.CharField(
        required=False, label="Extra approver groups (comma-separated)"
    )
    region = forms.CharField(
        required=False, max_length=32, label="Console region (empty = us-east-1)"
    )
    reason = ReasonField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["business_unit"].choices = _unit_choices()  # type: ignore[attr-defined]

    def item(self) -> dict[str, Any]:
        data = self.cleaned_data
        item: dict[str, Any] = {
            "id": data["id"].strip(),
            "alias": data["alias"].strip(),
            "business_unit": data["business_unit"],
            "environment": data["environment"],
        }
        if data["approvals_required"] is not None:
            item["approvals_required"] = data["approvals_required"]
        if approvers := _names(data["approver_groups"]):
            item["approver_groups"] = approvers
        if data["region"].strip():
            item["region"] = data["region"].strip()
        return item

    @classmethod
    def initial_from(cls, account: Account) -> dict[str, Any]:
        return {
            "id": account.account_id,
            "alias": account.alias,
            "business_unit": account.business_unit.slug,
            "environment": account.environment,
            "approvals_required": account.approvals_required,
            "approver_groups": ", ".join(account.approver_groups),
            "region": account.region,
        }


class RemoveForm(forms.Form):
    reason = ReasonField()


class UploadForm(forms.Form):
    file = forms.FileField(label="Mapping file (YAML)")
    reason = ReasonField()


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, max_length=500, label="Comment")


def add_file_errors(form: forms.Form, exc: MappingFileInvalid) -> None:
    """Each fault of the edited document on the form field it names, else on the form."""
    for error in exc.errors:
        field = error.path.rsplit(".", 1)[-1] if error.path else ""
        if field in form.fields:
            form.add_error(field, error.message)
        else:
            form.add_error(None, str(error))
