"""Closed vocabularies the database itself refuses to widen, whatever path writes the row."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from federation.models import EntitlementAccess
from tests.factories import SessionIssuanceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("access", [EntitlementAccess.STANDING, EntitlementAccess.GRANT])
def test_sessions_are_recorded_for_usable_access(access: EntitlementAccess) -> None:
    assert SessionIssuanceFactory(access=access).access == access


@pytest.mark.parametrize("access", [EntitlementAccess.ELIGIBLE, "admin"])
def test_the_database_refuses_a_session_for_access_not_usable(access: str) -> None:
    with pytest.raises(IntegrityError, match="issuance_access_usable"), transaction.atomic():
        SessionIssuanceFactory(access=access)
