"""The mapping editor (SPEC §3.4 /mappings/): browse, propose changes as drafts, apply, roll back.

Admins only. Every change becomes a draft showing its plan; nothing touches the tables until
``drafts.apply_draft`` runs, which goes through the same apply path as a file import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from federation.entitlements.scope import accounts_reached
from federation.mappings import (
    MappingFileInvalid,
    VersionNotFound,
    dump_document_yaml,
    get_version_document,
    parse_document,
)
from federation.mappings.compare import compare_documents
from federation.mappings.drafts import (
    DraftRefused,
    UploadRefused,
    apply_draft,
    close_draft,
    item_key,
    may_apply,
    propose_change,
    propose_edit,
)
from federation.mappings.forms import (
    AccountForm,
    DecisionForm,
    MappingRowForm,
    RemoveForm,
    UploadForm,
    add_file_errors,
)
from federation.models import (
    Account,
    BusinessUnit,
    DraftKind,
    GroupMapping,
    LogicalRole,
    MappingDraft,
    MappingVersion,
    User,
)
from federation.permissions import is_admin, require
from federation.refusals import refusal_page

admin_only = require(is_admin, "administrators")
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_ROWS_SHOWN = 500


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@admin_only
@require_GET
def mapping_index(request: HttpRequest) -> HttpResponse:
    rows = GroupMapping.objects.select_related("role", "business_unit").order_by(
        "business_unit__slug", "group", "role__name"
    )
    filters = {k: request.GET.get(k, "").strip() for k in ("group", "bu", "account", "role")}
    if filters["group"]:
        rows = rows.filter(group__icontains=filters["group"])
    if filters["bu"]:
        rows = rows.filter(business_unit__slug=filters["bu"])
    if filters["role"]:
        rows = rows.filter(role__name=filters["role"])
    accounts = list(Account.objects.select_related("business_unit"))
    shown: list[GroupMapping]
    if filters["account"]:
        account = next((a for a in accounts if a.account_id == filters["account"]), None)
        shown = [] if account is None else _rows_reaching(account, rows)
    else:
        shown = list(rows[:MAX_ROWS_SHOWN])
    return render(
        request,
        "federation/mappings/index.html",
        {
            "rows": shown[:MAX_ROWS_SHOWN],
            "filters": filters,
            "business_units": BusinessUnit.objects.all(),
            "accounts": accounts,
            "roles": LogicalRole.objects.all(),
            "drafts": MappingDraft.objects.filter(state=MappingDraft.State.OPEN).select_related(
                "created_by"
            ),
            "version": MappingVersion.objects.order_by("-number").first(),
        },
    )


@dataclass(frozen=True)
class _Placed:
    business_unit: str
    environment: str


def _rows_reaching(account: Account, rows: QuerySet[GroupMapping]) -> list[GroupMapping]:
    """The rows whose scope reaches ``account``, by the one scope rule entitlements use."""
    placed = _Placed(account.business_unit.slug, account.environment)
    by_id = {account.account_id: placed}
    of_unit = {placed.business_unit: (placed,)}
    return [
        row
        for row in rows.filter(business_unit_id=account.business_unit_id)
        if accounts_reached(
            placed.business_unit,
            row.environments,
            row.accounts,
            accounts_by_id=by_id,
            accounts_of_unit=of_unit,
        )
    ]


def _draft_form(
    request: HttpRequest,
    form: forms.Form,
    propose: Callable[[forms.Form], MappingDraft],
    *,
    title: str,
    template: str = "federation/mappings/form.html",
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """The one flow of every change page: a valid form becomes a draft (then its plan page);
    validation faults, refusals and file errors go back to the form with a 400."""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                draft = propose(form)
            except MappingFileInvalid as refusal:
                add_file_errors(form, refusal)
                status = refusal.status
            except (DraftRefused, VersionNotFound) as refusal:
                # Shown in the form, which keeps what the admin typed.
                form.add_error(None, refusal.message)
                status = refusal.status
            else:
                return redirect("mapping-draft", draft_id=draft.pk)
        else:
            status = 400
    return render(
        request, template, {"form": form, "title": title, **(context or {})}, status=status
    )


def _propose_form(
    request: HttpRequest,
    form_class: type[MappingRowForm] | type[AccountForm],
    *,
    section: str,
    old_key: tuple[Any, ...] | None,
    initial: dict[str, Any] | None,
    title: str,
) -> HttpResponse:
    def propose(form: forms.Form) -> MappingDraft:
        assert isinstance(form, MappingRowForm | AccountForm)
        item = form.item()
        return propose_edit(
            section,
            actor=_user(request),
            old_key=old_key,
            new_item=item,
            summary=f"{title}: {item.get('group') or item.get('alias')}",
            reason=form.cleaned_data["reason"],
            now=timezone.now(),
        )

    return _draft_form(
        request, form_class(request.POST or None, initial=initial), propose, title=title
    )


@admin_only
@require_http_methods(["GET", "POST"])
def mapping_new(request: HttpRequest) -> HttpResponse:
    return _propose_form(
        request, MappingRowForm, section="mappings", old_key=None, initial=None, title="Add mapping"
    )


@admin_only
@require_http_methods(["GET", "POST"])
def mapping_edit(request: HttpRequest, pk: int) -> HttpResponse:
    row = GroupMapping.objects.select_related("role", "business_unit").filter(pk=pk).first()
    if row is None:
        raise Http404("No such mapping row.")
    initial = MappingRowForm.initial_from(row)
    old_key = item_key("mappings", {**initial, "accounts": list(row.accounts)})
    return _propose_form(
        request,
        MappingRowForm,
        section="mappings",
        old_key=old_key,
        initial=initial,
        title="Edit mapping",
    )


@admin_only
@require_http_methods(["GET", "POST"])
def account_new(request: HttpRequest) -> HttpResponse:
    return _propose_form(
        request, AccountForm, section="accounts", old_key=None, initial=None, title="Add account"
    )


@admin_only
@require_http_methods(["GET", "POST"])
def account_edit(request: HttpRequest, account_id: str) -> HttpResponse:
    account = Account.objects.select_related("business_unit").filter(account_id=account_id).first()
    if account is None:
        raise Http404("No such account.")
    return _propose_form(
        request,
        AccountForm,
        section="accounts",
        old_key=(account.account_id,),
        initial=AccountForm.initial_from(account),
        title="Edit account",
    )


@admin_only
@require_http_methods(["GET", "POST"])
def row_remove(request: HttpRequest, section: str, key: str) -> HttpResponse:
    if section == "mappings":
        row = (
            GroupMapping.objects.select_related("role", "business_unit")
            # ASCII digits only, and few: "²" is a digit to str.isdigit but not to int(), and
            # thousands of digits are a ValueError too.
            .filter(pk=int(key) if key.isascii() and key.isdigit() and len(key) <= 18 else 0)
            .first()
        )
        if row is None:
            raise Http404("No such mapping row.")
        old_key = item_key(
            "mappings", {**MappingRowForm.initial_from(row), "accounts": list(row.accounts)}
        )
        label = str(row)
    elif section == "accounts":
        account = Account.objects.filter(account_id=key).first()
        if account is None:
            raise Http404("No such account.")
        old_key, label = (account.account_id,), str(account)
    else:
        raise Http404("Unknown section.")

    def propose(form: forms.Form) -> MappingDraft:
        return propose_edit(
            section,
            actor=_user(request),
            old_key=old_key,
            new_item=None,
            summary=f"Remove {label}",
            reason=form.cleaned_data["reason"],
            now=timezone.now(),
        )

    return _draft_form(request, RemoveForm(request.POST or None), propose, title=f"Remove {label}")


@admin_only
@require_http_methods(["GET", "POST"])
def mapping_upload(request: HttpRequest) -> HttpResponse:
    def propose(form: forms.Form) -> MappingDraft:
        upload = form.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise UploadRefused("The file is larger than 8 MiB.")
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UploadRefused("The file is not UTF-8 text.") from exc
        try:
            document = parse_document(text)
        except MappingFileInvalid as exc:
            # Faults name lines of the file, not form fields.
            raise UploadRefused("; ".join(str(e) for e in exc.errors)) from exc
        return propose_change(
            document,
            actor=_user(request),
            kind=DraftKind.UPLOAD,
            summary=f"Upload {upload.name}",
            reason=form.cleaned_data["reason"],
            now=timezone.now(),
        )

    form = UploadForm(request.POST or None, request.FILES or None)
    return _draft_form(
        request, form, propose, title="Upload a mapping file", context={"multipart": True}
    )


@admin_only
@require_GET
def mapping_download(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(dump_document_yaml(), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="mappings.yaml"'
    return response


@admin_only
@require_GET
def draft_detail(request: HttpRequest, draft_id: int) -> HttpResponse:
    draft = (
        MappingDraft.objects.select_related("created_by", "decided_by").filter(pk=draft_id).first()
    )
    if draft is None:
        raise Http404("No such draft.")
    user = _user(request)
    return render(
        request,
        "federation/mappings/draft.html",
        {
            "draft": draft,
            "plan": plan_view(draft.plan),
            "form": DecisionForm(),
            "is_author": draft.created_by.is_same_person(user),
            "can_apply": may_apply(draft, user),
        },
    )


@admin_only
@require_POST
def draft_decide(request: HttpRequest, draft_id: int, action: str) -> HttpResponse:
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    now = timezone.now()
    try:
        if action == "apply":
            outcome = apply_draft(draft_id, actor=_user(request), comment=comment, now=now)
            messages.success(
                request, f"Applied as mapping version {outcome.draft.applied_version}."
            )
        elif action in ("reject", "discard"):
            close_draft(
                draft_id, actor=_user(request), reject=action == "reject", comment=comment, now=now
            )
            messages.info(request, f"Draft #{draft_id} {action}ed.")
        else:
            raise Http404("Unknown action.")
    except MappingDraft.DoesNotExist as exc:
        raise Http404("No such draft.") from exc
    except DraftRefused as refusal:
        # The draft page is where the outcome shows, refused or not.
        messages.error(request, refusal.message)
    return redirect("mapping-draft", draft_id=draft_id)


@admin_only
@require_GET
def version_list(request: HttpRequest) -> HttpResponse:
    versions = list(MappingVersion.objects.order_by("-number").defer("document")[:200])
    current = versions[0].number if versions else None
    return render(
        request, "federation/mappings/versions.html", {"versions": versions, "current": current}
    )


def _version_number(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else None


@admin_only
@require_GET
def version_compare(request: HttpRequest) -> HttpResponse:
    """?from=A&to=B: what changes from version A to version B (either order, any two)."""
    raw = [request.GET.get(name, "") for name in ("from", "to")]
    numbers = [_version_number(value) for value in raw]
    found = {
        v.number: v
        for v in MappingVersion.objects.filter(number__in=[n for n in numbers if n is not None])
    }
    missing = [value for value, number in zip(raw, numbers, strict=True) if number not in found]
    if missing:
        refusal = VersionNotFound(
            f"No mapping version {missing[0][:20]!r}: compare two versions by number "
            "(?from=A&to=B)."
        )
        return refusal_page(
            request,
            refusal,
            back_url="/mappings/versions/",
            back_label="Back to the versions",
            recorded=False,
        )
    old, new = (found[n] for n in numbers if n is not None)
    current = MappingVersion.objects.order_by("-number").values_list("number", flat=True).first()
    return render(
        request,
        "federation/mappings/compare.html",
        {
            "old": old,
            "new": new,
            "current": current,
            "sections": compare_documents(old.document, new.document),
        },
    )


@admin_only
@require_http_methods(["GET", "POST"])
def version_detail(request: HttpRequest, number: int) -> HttpResponse:
    version = MappingVersion.objects.filter(number=number).first()
    if version is None:
        raise Http404("No such mapping version.")

    def propose(form: forms.Form) -> MappingDraft:
        return propose_change(
            get_version_document(number),
            actor=_user(request),
            kind=DraftKind.ROLLBACK,
            summary=f"Roll back to version {number}",
            reason=form.cleaned_data["reason"],
            now=timezone.now(),
        )

    current = MappingVersion.objects.order_by("-number").values_list("number", flat=True).first()
    return _draft_form(
        request,
        RemoveForm(request.POST or None),
        propose,
        title=f"Mapping version {number}",
        template="federation/mappings/version.html",
        context={"version": version, "plan": plan_view(version.plan), "current": current},
    )


def plan_view(plan: dict[str, Any]) -> dict[str, Any]:
    """A stored plan, with account ids named, ready for the template."""
    accounts = plan.get("accounts", {})

    def target(account_id: str, arn: str | None = None) -> str:
        account = accounts.get(account_id, {})
        where = f"{account.get('alias', account_id)} ({account_id}, "
        return where + f"{account.get('environment', '?')})" + (f" as {arn}" if arn else "")

    def named(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                **item,
                "targets": [
                    target(a, item.get("role_arns", {}).get(a)) for a in item.get("accounts", [])
                ],
            }
            for item in items
        ]

    def approvals(key: str) -> list[dict[str, Any]]:
        return [
            {**d, "gained": named(d.get("gained", [])), "lost": named(d.get("lost", []))}
            for d in plan.get(key, [])
        ]

    def diffs(key: str) -> list[dict[str, Any]]:
        return [
            {**d, "gained": named(d.get("gained", [])), "lost": named(d.get("lost", []))}
            for d in plan.get(key, [])
        ]

    return {
        "rows": plan.get("rows", []),
        "groups": diffs("groups"),
        "users": diffs("users"),
        "approvers": approvals("approvers"),
        "approver_users": approvals("approver_users"),
        "blockers": plan.get("blockers", []),
        "counts": plan.get("counts", {}),
        "base_version": plan.get("base_version"),
        # Drafts proposed before the control loop's preview have none (None: not shown).
        "iam_roles": plan.get("iam_roles"),
    }
