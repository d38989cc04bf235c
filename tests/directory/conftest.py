"""SCIM test helpers: an IdP with a token, and a client that speaks SCIM JSON to /scim/v2/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from federation.directory.tokens import create_scim_token
from federation.models import IdentityProvider
from tests.factories import IdentityProviderFactory


@dataclass
class Scim:
    """Sends SCIM requests with one IdP's bearer token; ``.json`` of the last answer."""

    idp: IdentityProvider
    token: str
    client: Client

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: str | None = None,
        **headers: str,
    ) -> Any:
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        response = self.client.generic(
            method,
            f"/scim/v2/{path.lstrip('/')}",
            data=data,
            content_type="application/scim+json",
            headers={"Authorization": f"Bearer {token or self.token}", **headers},
        )
        response.body = json.loads(response.content) if response.content else None  # type: ignore[attr-defined]
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> Any:
        return self.call("PATCH", path, body, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Any:
        return self.call("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)


def scim_for(idp: IdentityProvider) -> Scim:
    created = create_scim_token(idp, actor="test", now=timezone.now())
    return Scim(idp=idp, token=created.plaintext, client=Client())


@pytest.fixture
def scim(db: None) -> Scim:
    return scim_for(IdentityProviderFactory(slug="okta"))


USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def okta_user(email: str, *, given: str = "Alice", family: str = "Example") -> dict[str, Any]:
    """A user as Okta's SCIM 2.0 provisioning POSTs it (Okta developer docs, "SCIM 2.0
    protocol reference": Create the user)."""
    return {
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": True, "value": email, "type": "work"}],
        "displayName": f"{given} {family}",
        "locale": "en-US",
        "externalId": f"00u{abs(hash(email)) % 10**12:012d}",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
