"""The same user pushed twice at the same moment: one is created, the other is a SCIM 409,
never a database error (PostgreSQL's unique index is the last word)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from federation.directory import service
from federation.directory.errors import ScimError
from federation.models import DirectoryUser
from tests.factories import IdentityProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_creates_of_one_user_name_give_one_user_and_one_409() -> None:
    idp = IdentityProviderFactory(slug="okta")
    fields = service.UserFields(
        user_name="alice@corp.example",
        external_id="",
        active=True,
        email="alice@corp.example",
        attributes={},
    )
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def push() -> None:
        try:
            request = service.open_request(
                idp, method="POST", path="/scim/v2/Users", now=timezone.now()
            )
            barrier.wait(timeout=10)
            service.create_user(idp, fields, scim_request=request, now=timezone.now())
            outcomes.append("created")
        except ScimError as error:
            outcomes.append(error.status)
        except Exception as error:  # what must not happen
            outcomes.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=push) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(map(str, outcomes)) == ["409", "created"]
    assert DirectoryUser.objects.count() == 1
