"""The backend that reads a session's user on every page: the same user the ORM reads, and
nobody for an inactive, unknown or malformed id."""

from __future__ import annotations

import pytest
from django.test import Client

from federation.edge.auth import UserBackend
from federation.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_it_reads_the_user_the_orm_reads() -> None:
    user = UserFactory(directory_groups=["aws-pb-ops"])
    found = UserBackend().get_user(str(user.pk))
    assert found is not None
    orm = User.objects.get(pk=user.pk)
    for field in User._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(orm, field.attname), field.name


@pytest.mark.parametrize("user_id", ["999999", "", "1; DROP TABLE x", None, "1.5"])
def test_an_unknown_or_malformed_id_is_nobody(user_id: object) -> None:
    assert UserBackend().get_user(user_id) is None


def test_a_deactivated_users_session_signs_nobody_in(client: Client) -> None:
    user = UserFactory()
    client.force_login(user)
    assert client.get("/").status_code == 200
    User.objects.filter(pk=user.pk).update(is_active=False)
    answer = client.get("/")
    assert answer.status_code == 302 and "/login/" in answer["Location"]
