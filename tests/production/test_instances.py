"""Several instances (issue 18 item 6): two gunicorn instances started the documented way on one
PostgreSQL and one Redis share every piece of state one instance relies on between requests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from federation.issuance.tokens import create_api_token
from federation.models import AuditEvent, User
from tests.aws import free_port
from tests.production.conftest import Deployment, run_manage
from tests.production.served import (
    ProxiedClient,
    Served,
    saml_finish,
    saml_start,
    wait_started,
)


def test_two_instances_share_sign_ins_replays_limits_tokens_and_one_audit_chain(
    deployment: Deployment, launch: Callable[..., Served]
) -> None:
    # A budget per day: no window can roll over during the burst below.
    env = {**deployment.env, "WEB_CONCURRENCY": "1", "RATE_LIMIT_SIGNIN": "4/d"}
    one, two = launch("web", env, port=free_port()), launch("web", env, port=free_port())
    wait_started(one)
    wait_started(two)

    # A sign-in started on one instance completes on the other; the session works on both.
    browser = ProxiedClient(one.port, "203.0.113.21")
    started = saml_start(
        browser,
        deployment.signer,
        subject="00u-alice",
        email="alice@corp.example",
        groups=["aws-pb-cloud-eng"],
    )
    finished = saml_finish(browser, started, port=two.port)
    assert finished.status == 302, finished.text[:500]
    assert browser.get("/", port=one.port).status == 200
    assert browser.get("/", port=two.port).status == 200

    # The response consumed on the second instance is a replay on the first.
    replayer = ProxiedClient(one.port, "203.0.113.21", cookies=dict(started.cookies))
    replayed = saml_finish(replayer, started, port=one.port)
    assert replayed.status in (400, 403), replayed.text[:500]
    refusal = AuditEvent.objects.filter(event_type="signin.refused").latest("pk")
    assert refusal.data["reason"] == "saml.replay"

    # One budget per client address across both instances.
    burst = ProxiedClient(one.port, "203.0.113.30")
    for port in (one.port, two.port, one.port, two.port):
        assert burst.get("/saml/corp/login/", port=port).status == 302
    assert burst.get("/saml/corp/login/", port=one.port).status == 429
    assert burst.get("/saml/corp/login/", port=two.port).status == 429
    assert AuditEvent.objects.filter(event_type="rate_limit.exceeded").count() == 1
    assert ProxiedClient(two.port, "203.0.113.31").get("/saml/corp/login/").status == 302

    # A token revoked through one instance is refused by both.
    alice = User.objects.get(email="alice@corp.example")
    token = create_api_token(
        alice, name="laptop", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    api = ProxiedClient(one.port, "203.0.113.40")
    bearer = {"Authorization": f"Bearer {token}"}
    for port in (one.port, two.port):
        assert api.get("/api/v1/entitlements", headers=bearer, port=port).status == 200
    revoked = api.request("POST", "/api/v1/token/revoke", headers=bearer, port=two.port)
    assert revoked.status == 200, revoked.text[:300]
    for port in (one.port, two.port):
        assert api.get("/api/v1/entitlements", headers=bearer, port=port).status == 401

    # Both instances wrote into one audit chain, which verifies.
    placed = run_manage(env, "audit_sequencer", "--once")
    assert placed.returncode == 0, placed.stderr
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    verified = run_manage(env, "audit_verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
