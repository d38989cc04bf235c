"""The hot paths' hand-written SQL reads models exactly as the ORM does, and a pipeline's
statements all run in the enclosing transaction."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from federation import rawsql
from federation.models import IdentityProvider, User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _read(model: type[User] | type[IdentityProvider], pk: int) -> object:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.columns(model, 't')} FROM {model._meta.db_table} t WHERE t.id = %s",  # noqa: S608
            [pk],
        )
        return rawsql.instance(model, cursor.fetchone())


def test_an_instance_from_a_raw_row_equals_the_orms() -> None:
    user = UserFactory(directory_groups=["aws-pb-ops", "everyone"])
    idp = user.idp
    idp.config = {"sso_url": "https://idp.example/sso", "link_by_email": False}
    idp.mfa_authn_contexts = ["urn:okta:loa:2fa:any"]
    idp.save()

    for model, pk in ((User, user.pk), (IdentityProvider, idp.pk)):
        raw, orm = _read(model, pk), model.objects.get(pk=pk)
        for field in model._meta.concrete_fields:
            assert getattr(raw, field.attname) == getattr(orm, field.attname), field.name
        assert not raw._state.adding  # a saved row: save() updates, never inserts


def test_a_pipelines_statements_roll_back_with_the_transaction() -> None:
    user = UserFactory(email="before@corp.example")
    with pytest.raises(RuntimeError), transaction.atomic():
        with rawsql.pipelined() as sync, connection.cursor() as cursor:
            cursor.execute(
                "UPDATE federation_user SET email = %s WHERE id = %s",
                ["after@corp.example", user.pk],
            )
            sync()
            assert cursor.rowcount == 1
        raise RuntimeError("the caller fails after the pipeline")
    user.refresh_from_db()
    assert user.email == "before@corp.example"
