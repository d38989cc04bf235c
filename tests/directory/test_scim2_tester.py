"""scim2-tester, an independent SCIM compliance checker, against the service over real HTTP
(pytest-django's live server). Every check it runs must pass; none is skipped by us."""

from __future__ import annotations

import pytest
from httpx2 import Client
from pytest_django.live_server_helper import LiveServer
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.directory.conftest import scim_for
from tests.factories import IdentityProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


def test_scim2_tester_finds_nothing_wrong(live_server: LiveServer) -> None:
    scim = scim_for(IdentityProviderFactory(slug="okta"))
    with Client(
        base_url=f"{live_server.url}/scim/v2",
        headers={"Authorization": f"Bearer {scim.token}"},
        timeout=30,
    ) as http:
        results = check_server(SyncSCIMClient(http))

    ran = [r for r in results if r.status != Status.SKIPPED]
    failed = [
        f"{r.status.name} {r.title} [{r.resource_type}]: {r.reason}"
        for r in ran
        if r.status not in PASSING
    ]
    assert ran, "scim2-tester ran no check"
    assert not failed, "\n".join(failed)
    # What the checker skips on its own (docs/scim.md lists them with the reasons).
    for r in results:
        if r.status == Status.SKIPPED:
            print(f"skipped: {r.title} [{r.resource_type}]: {r.reason}")
