"""Benchmark: one SP-initiated SAML sign-in through the ACS view, against python3-saml's bare
strict ``is_valid`` on the same responses, in the same run.

Responses are made beforehand by the tests' pysaml2 IdP (tests/saml_idp.py; needs ``xmlsec1``),
one per AuthnRequest, since each can be used once. Prints p50/p99 in milliseconds of

* baseline: ``OneLogin_Saml2_Response(settings, b64).is_valid(request_data, request_id)`` in
  strict mode with stock python3-saml 1.16 (settings built once; it compiles its XSD per call),
* is_valid with the compiled-schema cache: the same call once ``federation.idp.saml_schemas``
  has replaced python3-saml's per-call XSD compile with a compiled-once schema,
* validate: ``federation.idp.saml_response.validate_response``: every check the product makes
  (python3-saml strict with the compiled-schema cache, transform allow-list, audience,
  destination, recipient, InResponseTo, the AuthnRequest lookup), no writes,
* acs: POST /saml/<idp>/acs/ through Django's whole middleware stack: validation, the
  single-use AuthnRequest and replay records, user update, sign-in record, audit event, session
  rotation and save, with PostgreSQL's durable commits,
* acs, synchronous_commit=off: the same, with this benchmark's connection not waiting for the
  WAL flush, to show what is CPU and round trips and what is the disk's fsync latency (the
  product never turns durability off).

Also prints the cost of one durable INSERT+COMMIT on this machine. Runs in its own database
``<DATABASE_URL name>_bench_saml``, created and dropped here.
Usage: ``DATABASE_URL=postgres://... python bench/saml_acs.py [N]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchdb import scratch_database

# Timed as in production: DEBUG off (benchdb's default is on), so a real SECRET_KEY is needed.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
# Hundreds of sign-ins from one address in a few seconds: exactly what the rate limits stop.
os.environ.setdefault("RATE_LIMITS_ENABLED", "0")
# As production runs (docs/production.md): sessions in Redis, audit events placed by the batched
# sequencer. Set either to "" / "inline" to time the other configuration.
os.environ.setdefault("SESSION_CACHE_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("SESSION_CACHE_PREFIX", "bench-saml")
os.environ.setdefault("AUDIT_SEQUENCING", "batched")
SCRATCH = scratch_database("bench/saml_acs.py", "bench_saml")

import psycopg  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
WARMUP = 20
HOST = "127.0.0.1"


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def timed(items: list[object], call: object) -> list[float]:
    samples = []
    for i, item in enumerate(items):
        start = time.perf_counter()
        call(item)  # type: ignore[operator]
        if i >= WARMUP:
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def commit_cost() -> float:
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("CREATE TABLE bench_commit (x int)")
        conn.commit()
        start = time.perf_counter()
        for _ in range(200):
            conn.execute("INSERT INTO bench_commit VALUES (1)")
            conn.commit()
        elapsed = (time.perf_counter() - start) / 200 * 1000
        conn.execute("DROP TABLE bench_commit")
        conn.commit()
    return elapsed


def main() -> None:
    SCRATCH.recreate()
    import django

    django.setup()
    import gc

    gc.freeze()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone
    from onelogin.saml2.response import OneLogin_Saml2_Response

    from federation.idp import saml, saml_response, saml_schemas
    from federation.models import User
    from tests.saml_idp import b64, make_flow

    try:
        call_command("migrate", verbosity=0)
        flow = make_flow(
            "bench", Path(tempfile.mkdtemp(prefix="bench-saml-")), Client(HTTP_HOST=HOST)
        )
        total = N + WARMUP
        t0 = time.perf_counter()
        batches = []
        for _ in range(2):
            batch = []
            for _ in range(total):
                # Each login in its own browser, which keeps its login-start cookie.
                browser = Client(HTTP_HOST=HOST)
                seen = flow.start(client=browser)
                batch.append((seen, b64(flow.signer.response_xml(seen)), browser))
            batches.append(batch)
        print(
            f"prepared {2 * total} responses signed by pysaml2/xmlsec1 "
            f"({time.perf_counter() - t0:.1f} s, not timed)"
        )
        durable, relaxed = batches
        settings_obj = saml.saml_settings(flow.idp)
        request_data = saml.request_data(flow.idp)

        def bare(item: tuple) -> None:  # type: ignore[type-arg]
            seen, encoded, _ = item
            response = OneLogin_Saml2_Response(settings_obj, encoded)
            assert response.is_valid(
                request_data, request_id=seen.request_id, raise_exceptions=True
            )

        saml_schemas.uninstall()
        baseline = timed(durable, bare)
        assert saml_schemas.install(), "unknown python3-saml version: see the log"
        cached = timed(durable, bare)

        cookie = saml.browser_cookie(flow.idp).name

        def validate(item: tuple) -> None:  # type: ignore[type-arg]
            seen, encoded, browser = item
            saml_response.validate_response(
                flow.idp,
                saml_response=encoded,
                relay_state=seen.relay_state,
                browser_secret=browser.cookies[cookie].value,
                now=timezone.now(),
            )

        validated = timed(durable, validate)

        url = f"/saml/{flow.idp.slug}/acs/"

        def acs(item: tuple) -> None:  # type: ignore[type-arg]
            seen, encoded, browser = item
            answer = browser.post(url, {"SAMLResponse": encoded, "RelayState": seen.relay_state})
            assert answer.status_code == 302, answer.content[-300:]

        full = timed(durable, acs)
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        full_relaxed = timed(relaxed, acs)
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = on")
        assert User.objects.count() == 1

        rows = [
            ("baseline: python3-saml 1.16 bare is_valid", baseline),
            ("is_valid with the compiled-schema cache", cached),
            ("validate: every product check, no writes", validated),
            ("acs: whole sign-in through the view", full),
            ("acs, synchronous_commit=off (bench only)", full_relaxed),
        ]
        print(f"{'':44} {'p50 ms':>8} {'p99 ms':>8}")
        for label, samples in rows:
            print(f"{label:44} {statistics.median(samples):8.2f} {percentile(samples, 99):8.2f}")
        b50 = statistics.median(baseline)
        for label, samples in rows[1:]:
            ratio = statistics.median(samples) / b50
            print(f"{label.split(':')[0]:>44} / baseline at p50: {ratio:.2f}x")
        print(f"one durable INSERT+COMMIT on this PostgreSQL: {commit_cost():.2f} ms  (n={N} each)")
    finally:
        SCRATCH.drop()


if __name__ == "__main__":
    main()
