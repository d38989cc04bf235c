"""The demo runs on SQLite (`make demo`): the sign-in's PostgreSQL fast path must leave it a
working path. Run in a child process, since the suite itself runs on PostgreSQL only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import django
django.setup()
from datetime import timedelta
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone
from federation.edge.auth import UserBackend
from federation.idp.identity import VerifiedIdentity
from federation.idp.saml_requests import claims_for, pending_login
from federation.idp.signin import complete_sign_in
from federation.models import IdentityProvider, PortalSession, SamlAuthnRequest, SignIn

call_command("migrate", verbosity=0)
idp = IdentityProvider.objects.create(slug="demo", protocol="saml", entity_id="x")
for n in range(2):  # a first sign-in, then a returning one
    now = timezone.now()
    SamlAuthnRequest.objects.create(
        idp=idp, relay_state=f"rs{n}", request_id=f"id{n}", next_path="/",
        browser_binding="b", created_at=now, expires_at=now + timedelta(minutes=5),
    )
    pending = pending_login("demo", f"rs{n}")
    assert pending is not None and pending.expires_at > now
    request = RequestFactory().post("/saml/demo/acs/")
    request.session = SessionStore()
    identity = VerifiedIdentity(idp=idp, subject="alice", email="a@corp.example", groups=("g",))
    user = complete_sign_in(
        request, identity, now=now,
        claims=claims_for(idp, pending, f"a{n}", now + timedelta(minutes=10), now),
    )
assert SignIn.objects.filter(user=user).count() == 2
assert PortalSession.objects.filter(user=user).count() == 2
found = UserBackend().get_user(str(user.pk))
assert found is not None and found.directory_groups == ["g"]
assert found.last_login is not None and found.last_login.tzinfo is not None
print("signed in twice")
"""


def test_the_demo_database_signs_people_in(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "federation.settings",
        "DEBUG": "1",
        "DEMO_MODE": "1",
        "SESSION_CACHE_URL": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "signed in twice" in done.stdout
