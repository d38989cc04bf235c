"""SAML sign-in through the HTTP endpoints, with responses signed by pysaml2 (tests/saml_idp.py)."""

from __future__ import annotations

import pytest

from federation.models import AuditEvent, SignIn, User
from tests.saml_idp import SamlFlow

pytestmark = pytest.mark.django_db


def test_sp_initiated_sign_in_creates_the_person_and_a_session(saml_flow: SamlFlow) -> None:
    seen = saml_flow.start(next_path="/requests/")
    answer = saml_flow.post(saml_flow.signer.response_xml(seen), seen.relay_state)

    assert answer.status_code == 302, answer.content.decode()
    assert answer["Location"] == "/requests/"
    user = User.objects.get(idp=saml_flow.idp, subject="00u-alice")
    assert user.email == "alice@corp.example"
    assert user.directory_groups == ["aws-pb-cloud-eng", "everyone"]
    assert user.manager == "bob@corp.example"
    assert SignIn.objects.get(user=user).groups == ["aws-pb-cloud-eng", "everyone"]
    assert saml_flow.client.session["_auth_user_id"] == str(user.pk)
    assert AuditEvent.objects.filter(event_type="signin.success").count() == 1
