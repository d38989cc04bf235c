"""Production smoke test (issue 18 item 2): the service started the documented way
(scripts/serve: gunicorn, a Celery worker and beat on RabbitMQ, PostgreSQL), https BASE_URL
behind a trusted proxy; sign in, issue, file and approve a request, see the notifications
arrive, then stop gunicorn with a request in flight and see that request complete."""

from __future__ import annotations

import threading
from collections.abc import Callable

from access_requests.models import AccessRequest
from tests.access_requests.live import MailSink, WebhookSink, wait_for
from tests.aws import MotoServer, free_port
from tests.production.conftest import Deployment, run_manage
from tests.production.served import (
    Answer,
    ProxiedClient,
    Served,
    StsGate,
    saml_finish,
    saml_start,
    wait_started,
)

CLI = {"account": "111111111111", "role": "cloud-eng", "action": "cli"}


def _sign_in(client: ProxiedClient, deployment: Deployment, name: str, groups: list[str]) -> None:
    started = saml_start(
        client,
        deployment.signer,
        subject=f"00u-{name}",
        email=f"{name}@corp.example",
        groups=groups,
    )
    finished = saml_finish(client, started)
    assert finished.status == 302, finished.text[:500]
    assert client.get("/").status == 200


def _issue(client: ProxiedClient) -> Answer:
    token = client.get("/").csrf()
    return client.post(
        "/sessions/",
        {**CLI, "csrfmiddlewaretoken": token},
        headers={"Accept": "application/json"},
    )


def test_production_start_signs_in_issues_approves_notifies_and_stops_gracefully(
    deployment: Deployment,
    aws: MotoServer,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
    launch: Callable[..., Served],
) -> None:
    mail_sink.reset()
    webhook_sink.reset()
    gate = StsGate(aws.url)
    try:
        env = {
            **deployment.env,
            "STS_ENDPOINTS": f"eu-west-1={gate.url}",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(mail_sink.port),
            "DEFAULT_FROM_EMAIL": "aws-access@corp.example",
            "SLACK_WEBHOOK_URL": webhook_sink.url,
        }
        web = launch("web", env, port=free_port())
        worker = launch("worker", env, "--pool=solo", "--without-gossip", "--without-mingle")
        beat = launch("beat", env)
        wait_started(web)
        wait_started(worker, "ready.")
        wait_started(beat, "beat: Starting")

        # Plain http without the proxy's header is sent to https; static files are served.
        plain = ProxiedClient(web.port).get("/login/", headers={"X-Forwarded-Proto": "http"})
        assert plain.status == 301 and plain.header("Location") == "https://fed.test/login/"
        assert ProxiedClient(web.port).get("/static/css/site.css").status == 200

        alice, bob = (
            ProxiedClient(web.port, "203.0.113.11"),
            ProxiedClient(web.port, "203.0.113.12"),
        )
        _sign_in(bob, deployment, "bob", ["aws-pb-managers"])
        _sign_in(alice, deployment, "alice", ["aws-pb-cloud-eng", "aws-pb-admin"])
        assert any(name.startswith("__Host-") for name in alice.cookies)

        issued = _issue(alice)
        assert issued.status == 200, issued.text[:500]
        assert set(issued.json()) >= {"AccessKeyId", "SecretAccessKey", "SessionToken"}

        form = alice.get("/requests/")
        filed = alice.post(
            "/requests/",
            {
                "csrfmiddlewaretoken": form.csrf(),
                "target": "111111111111/admin",
                "duration_minutes": "60",
                "justification": "smoke test: incident 42",
            },
        )
        assert filed.status == 302, filed.text[:500]
        wait_for(lambda: mail_sink.to("bob@corp.example"), timeout=60, what="the approver's mail")

        request = AccessRequest.objects.get()
        page = bob.get("/approvals/")
        decided = bob.post(
            f"/approvals/{request.pk}/decide/",
            {"csrfmiddlewaretoken": page.csrf(), "decision": "approve", "comment": "ok"},
        )
        assert decided.status == 302, decided.text[:500]
        request.refresh_from_db()
        assert request.state == AccessRequest.State.APPROVED
        wait_for(
            lambda: mail_sink.to("alice@corp.example"), timeout=60, what="the requester's mail"
        )
        wait_for(lambda: webhook_sink.posts, timeout=60, what="the webhook post")

        # Graceful stop: an issuance held at STS while gunicorn receives SIGTERM completes.
        gate.hold()
        answers: list[Answer] = []
        in_flight = threading.Thread(target=lambda: answers.append(_issue(alice)))
        in_flight.start()
        assert gate.arrived.wait(timeout=60), "the issuance never reached STS"
        web.terminate()
        wait_for(lambda: "Handling signal: term" in web.output(), timeout=30, what="SIGTERM")
        gate.release()
        in_flight.join(timeout=60)
        assert answers and answers[0].status == 200, answers and answers[0].text[:500]
        assert "SessionToken" in answers[0].json()
        assert web.process.wait(timeout=60) == 0, web.output()[-2000:]

        # The audit chain the three processes wrote is one valid chain.
        placed = run_manage(env, "audit_sequencer", "--once")
        assert placed.returncode == 0, placed.stderr
        verified = run_manage(env, "audit_verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # Logs carry no credentials.
        for served in (web, worker, beat):
            assert issued.json()["SecretAccessKey"] not in served.output()
    finally:
        gate.close()
