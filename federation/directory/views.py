"""The SCIM 2.0 endpoints under /scim/v2/ (RFC 7644) and the admin page /scim/.

Every SCIM call is authenticated by the IdP's bearer token (never the session cookie, so CSRF
does not apply), logged as a ``ScimRequest``, and answered in ``application/scim+json``; every
refusal is a SCIM error body with its status and ``scimType``, audited as ``scim.refused``.
Views validate and call one service function; resources.py turns JSON into fields and back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from scim2_models import Context, Group

from federation.audit.chain import record_refusal, request_ip
from federation.directory import groups as group_service
from federation.directory import resources, service
from federation.directory.errors import ScimError
from federation.directory.filters import SCAN_LIMIT, parse_filter
from federation.directory.status import directory_status
from federation.directory.tokens import ScimTokenRefused, authenticate_scim_token
from federation.input_guard import UnsafeInput, load_json
from federation.models import IdentityProvider, ScimRequest
from federation.permissions import is_admin, require

CONTENT_TYPE = "application/scim+json"
Answer = tuple[int, Any, dict[str, str]]
Handler = Callable[..., Answer]


def base_url() -> str:
    # From settings, never from the Host header (SECURITY.md): locations are links we vouch for.
    return f"{settings.BASE_URL}/scim/v2"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(
        b"" if body is None else json.dumps(body, default=str).encode(),
        status=status,
        content_type=CONTENT_TYPE,
    )
    response["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _error(error: ScimError) -> HttpResponse:
    response = _json(error.status, resources.error_body(error))
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="fedaccess-scim"'
    return response


def scim_endpoint(methods: dict[str, Handler]) -> Callable[..., HttpResponse]:
    """One URL: authenticate, log, dispatch by method, answer every refusal as a SCIM error."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        now = timezone.now()
        try:
            idp = authenticate_scim_token(request.headers.get("Authorization", ""), now=now)
        except ScimTokenRefused as refusal:
            record_refusal(
                "scim.refused",
                refusal,
                actor="anonymous",
                target=request.path[:500],
                ip=request_ip(request),
                now=now,
                data={"method": request.method},
            )
            return _error(ScimError(refusal.message, status=401))
        scim_request = service.open_request(
            idp, method=request.method or "", path=request.path, now=now
        )
        try:
            handler = methods.get(request.method or "")
            if handler is None:
                raise ScimError(
                    f"{request.method} is not allowed here; use {', '.join(sorted(methods))}.",
                    status=405,
                )
            status, body, headers = handler(request, idp, scim_request, now, **kwargs)
        except ScimError as error:
            record_refusal(
                "scim.refused",
                error,
                actor=f"scim:{idp.slug}",
                target=request.path[:500],
                ip=request_ip(request),
                now=now,
                data={"idp": idp.slug, "scim_request": scim_request.pk, "method": request.method},
            )
            service.close_request(scim_request, status=error.status, error=error)
            response = _error(error)
            if error.status == 405:
                response["Allow"] = ", ".join(sorted(methods))
            return response
        service.close_request(scim_request, status=status, error=None)
        return _json(status, body, headers)

    return view


def _body(request: HttpRequest) -> Any:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ScimError("The body is too large.", status=413) from None
    if not raw.strip():
        raise ScimError("The request needs a JSON body.", scim_type="invalidSyntax")
    try:
        return load_json(raw)
    except UnsafeInput as exc:
        raise ScimError(exc.message, scim_type="invalidSyntax") from None


def _if_match(request: HttpRequest) -> str | None:
    return request.headers.get("If-Match")


def _int(request: HttpRequest, name: str, default: int) -> int:
    value = request.GET.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ScimError(f"{name} must be an integer.", scim_type="invalidValue") from None


def _parameters(request: HttpRequest) -> Any:
    return resources.response_parameters(
        request.GET.get("attributes"), request.GET.get("excludedAttributes")
    )


def _resource(
    model: Any, request: HttpRequest, *, status: int = 200, created: bool = False
) -> Answer:
    context = Context.RESOURCE_CREATION_RESPONSE if created else Context.RESOURCE_QUERY_RESPONSE
    body = resources.dump(model, context=context, parameters=_parameters(request))
    headers = {"ETag": model.meta.version, "Location": model.meta.location}
    return status, body, headers


def _listing(
    request: HttpRequest, queryset: Any, *, kind: str, model: Any, build: Callable[[Any], Any]
) -> Answer:
    start = max(_int(request, "startIndex", 1), 1)
    count = min(max(_int(request, "count", resources.MAX_RESULTS), 0), resources.MAX_RESULTS)
    text = request.GET.get("filter")
    if text:
        parsed = parse_filter(text, kind=kind, model=model)
        if parsed.query is not None:
            queryset = queryset.filter(parsed.query).distinct()
        else:
            if queryset.count() > SCAN_LIMIT:
                raise ScimError(
                    "This filter is answered only for directories of up to "
                    f"{SCAN_LIMIT} {kind.lower()}s; filter on an indexed attribute.",
                    scim_type="tooMany",
                )
            matching = [obj for obj in queryset if parsed.scan.match(build(obj))]
            page = [build(obj) for obj in matching[start - 1 : start - 1 + count]]
            return (
                200,
                resources.list_response(
                    page,
                    total=len(matching),
                    start_index=start,
                    model=model,
                    parameters=_parameters(request),
                ),
                {},
            )
    total = queryset.count()
    page = [build(obj) for obj in queryset[start - 1 : start - 1 + count]] if count else []
    body = resources.list_response(
        page, total=total, start_index=start, model=model, parameters=_parameters(request)
    )
    return 200, body, {}


# --- Users ----------------------------------------------------------------------------------


def _user(entry: Any) -> Any:
    return resources.user_model(entry, base_url=base_url())


def list_users(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime
) -> Answer:
    users = service.users_of(idp).order_by("pk")
    return _listing(request, users, kind="User", model=resources.ScimUser, build=_user)


def create_user(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime
) -> Answer:
    fields = resources.parse_user(_body(request), replacing=False)
    entry = service.create_user(idp, fields, scim_request=sr, now=now)
    return _resource(_user(entry), request, status=201, created=True)


def get_user(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    return _resource(_user(service.get_user(idp, scim_id)), request)


def replace_user(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    fields = resources.parse_user(_body(request), replacing=True)
    entry = service.replace_user(
        idp, scim_id, fields, scim_request=sr, now=now, if_match=_if_match(request)
    )
    return _resource(_user(entry), request)


def patch_user(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    body = _body(request)
    entry = service.patch_user(
        idp,
        scim_id,
        lambda current: resources.patched_user(current, body),
        scim_request=sr,
        now=now,
        if_match=_if_match(request),
    )
    return _resource(_user(entry), request)


def delete_user(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    service.delete_user(idp, scim_id, scim_request=sr, now=now)
    return 204, None, {}


# --- Groups ---------------------------------------------------------------------------------


def _group(group: Any, *, members: bool = True) -> Any:
    return resources.group_model(group, base_url=base_url(), with_members=members)


def list_groups(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime
) -> Answer:
    # Okta and Entra page through groups without their members unless asked for them.
    excluded = (request.GET.get("excludedAttributes") or "").lower()
    members = "members" not in {part.strip() for part in excluded.split(",")}
    found = group_service.groups_of(idp).order_by("pk")
    return _listing(
        request, found, kind="Group", model=Group, build=lambda g: _group(g, members=members)
    )


def create_group(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime
) -> Answer:
    fields = resources.parse_group(_body(request), replacing=False)
    group = group_service.create_group(idp, fields, scim_request=sr, now=now)
    return _resource(_group(group), request, status=201, created=True)


def get_group(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    return _resource(_group(group_service.get_group(idp, scim_id)), request)


def replace_group(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    fields = resources.parse_group(_body(request), replacing=True)
    group = group_service.change_group(
        idp, scim_id, lambda _: fields, scim_request=sr, now=now, if_match=_if_match(request)
    )
    return _resource(_group(group), request)


def patch_group(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    body = _body(request)
    group = group_service.change_group(
        idp,
        scim_id,
        lambda current: resources.patched_group(current, body),
        scim_request=sr,
        now=now,
        if_match=_if_match(request),
    )
    return _resource(_group(group), request)


def delete_group(
    request: HttpRequest, idp: IdentityProvider, sr: ScimRequest, now: datetime, scim_id: str
) -> Answer:
    group_service.delete_group(idp, scim_id, scim_request=sr, now=now)
    return 204, None, {}


# --- Discovery ------------------------------------------------------------------------------


def _discovery_list(kind: str) -> Handler:
    def handler(
        request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime
    ) -> Answer:
        items = resources.discovery(kind, base_url=base_url())
        assert isinstance(items, list)
        return (
            200,
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": len(items),
                "startIndex": 1,
                "itemsPerPage": len(items),
                "Resources": items,
            },
            {},
        )

    return handler


def _discovery_item(kind: str) -> Handler:
    def handler(
        request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime, item_id: str
    ) -> Answer:
        items = resources.discovery(kind, base_url=base_url())
        assert isinstance(items, list)
        for item in items:
            if item["id"] == item_id:
                return 200, item, {}
        raise ScimError(f"No {kind[:-1]} {item_id[:100]!r} here.", status=404)

    return handler


def service_provider_config(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime
) -> Answer:
    return 200, resources.discovery("ServiceProviderConfig", base_url=base_url()), {}


def not_found(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime, rest: str
) -> Answer:
    raise ScimError("No such SCIM endpoint.", status=404)


def search_not_implemented(
    request: HttpRequest, idp: IdentityProvider, _: ScimRequest, now: datetime
) -> Answer:
    # RFC 7644 §3.4.3: POST /.search is a MAY; Okta and Entra ID filter with GET.
    raise ScimError("POST /.search is not supported; filter with GET.", status=501)


_ANY = ("GET", "POST", "PUT", "PATCH", "DELETE")

users = scim_endpoint({"GET": list_users, "POST": create_user})
user = scim_endpoint(
    {"GET": get_user, "PUT": replace_user, "PATCH": patch_user, "DELETE": delete_user}
)
groups = scim_endpoint({"GET": list_groups, "POST": create_group})
group = scim_endpoint(
    {"GET": get_group, "PUT": replace_group, "PATCH": patch_group, "DELETE": delete_group}
)
provider_config = scim_endpoint({"GET": service_provider_config})
resource_types = scim_endpoint({"GET": _discovery_list("ResourceTypes")})
resource_type = scim_endpoint({"GET": _discovery_item("ResourceTypes")})
schemas = scim_endpoint({"GET": _discovery_list("Schemas")})
schema = scim_endpoint({"GET": _discovery_item("Schemas")})
unknown = scim_endpoint({method: not_found for method in _ANY})
search = scim_endpoint({"POST": search_not_implemented})


# --- The admin page -------------------------------------------------------------------------


@require(is_admin, "administrators")
def status_page(request: HttpRequest) -> HttpResponse:
    return render(request, "federation/directory/status.html", directory_status(now=timezone.now()))
