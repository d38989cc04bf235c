"""`manage.py seed_demo`: the demo data set of SPEC §6 (idempotent).

Creates the development IdP row and the demo users bound to it, then applies
``federation/demo/mappings.yaml`` through the same path as ``import_mappings`` (source
"seed"), so the plan shows what each demo user gains and a second run finds no changes.
Refused outside DEMO_MODE/DEBUG: the file is a complete desired state and would replace a real
installation's mapping tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from federation.audit.chain import cli_actor, record_event
from federation.demo.idp import DEMO_IDP_DISPLAY_NAME, DEMO_IDP_ENTITY_ID, DEMO_IDP_SLUG
from federation.idp.registry import IdpFields, save_idp
from federation.mappings import apply_document, parse_document
from federation.models import IdentityProvider, MappingVersion, User
from federation.refusals import Refused

DEMO_MAPPINGS = Path(__file__).resolve().parents[2] / "demo" / "mappings.yaml"


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    groups: tuple[str, ...]

    @property
    def email(self) -> str:
        return f"{self.username}@example.com"

    @property
    def subject(self) -> str:
        return f"demo-{self.username}"  # stable: the IdP's immutable id for this person


DEMO_USERS = (
    DemoUser("alice", "Alice", ("aws-pb-cloud-eng", "aws-pb-admin")),
    DemoUser("bob", "Bob", ("aws-pb-managers",)),
    DemoUser("carol", "Carol", ("aws-pb-managers",)),
    DemoUser("dave", "Dave", ("aws-dw-database-eng", "aws-dw-admin")),
    DemoUser("erin", "Erin", ("aws-dw-managers",)),
    DemoUser("admin", "Ada", ("fedaccess-admins",)),
    # A second admin, so the two-person rule of mapping changes can be tried in the demo.
    DemoUser("admin2", "Grace", ("fedaccess-admins",)),
    DemoUser("auditor", "Otto", ("fedaccess-auditors",)),
)


class Command(BaseCommand):
    help = "Load the demo data set (SPEC §6): mappings, the demo IdP and demo users. Idempotent."

    def handle(self, *args: Any, **options: Any) -> None:
        if not (settings.DEMO_MODE or settings.DEBUG):
            raise CommandError(
                "seed_demo replaces the mapping tables with the demo data set; it runs only "
                "with DEMO_MODE=1 (or DEBUG=1)."
            )
        actor = cli_actor()
        now = timezone.now()
        # Users first, so the mapping plan shows what each demo user gains.
        identities = seed_identities(actor, now=now)
        try:
            document = parse_document(DEMO_MAPPINGS.read_text(encoding="utf-8"))
            result = apply_document(
                document,
                actor=actor,
                source=MappingVersion.Source.SEED,
                reason="demo data set (seed_demo)",
                now=now,
            )
        except Refused as refusal:
            raise CommandError(refusal.message) from refusal
        if result.changed:
            self.stdout.write(result.plan.render_text())
        for line in identities:
            self.stdout.write(line)
        self.stdout.write(f"Mappings: {result.message}")


def seed_identities(actor: str, *, now: datetime) -> list[str]:
    """Create or refresh the demo IdP and users; returns what was done, one line each."""
    done: list[str] = []
    idp = IdentityProvider.objects.filter(slug=DEMO_IDP_SLUG).first()
    if idp is not None and (idp.entity_id, idp.display_name) == (
        DEMO_IDP_ENTITY_ID,
        DEMO_IDP_DISPLAY_NAME,
    ):
        done.append(f"Identity provider {idp.slug}: already present")
    else:
        # The one registration path; demo_idp later adds the development IdP's URL and key.
        idp, created = save_idp(
            DEMO_IDP_SLUG,
            IdentityProvider.Protocol.SAML,
            IdpFields(
                entity_id=DEMO_IDP_ENTITY_ID,
                config=lambda stored: stored,
                display_name=DEMO_IDP_DISPLAY_NAME,
            ),
            event_type=lambda created: "idp.registered" if created else "idp.updated",
            audit_data={"protocol": IdentityProvider.Protocol.SAML.value, "source": "seed_demo"},
            actor=actor,
            now=now,
        )
        done.append(f"Identity provider {idp.slug}: {'created' if created else 'updated'}")
    with transaction.atomic(durable=True):
        for demo in DEMO_USERS:
            wanted = {
                "username": demo.username,
                "email": demo.email,
                "first_name": demo.first_name,
                "directory_groups": list(demo.groups),
            }
            user = User.objects.filter(idp=idp, subject=demo.subject).first()
            if user is None:
                user = User(idp=idp, subject=demo.subject, **wanted)
                user.set_unusable_password()  # sign-in is through the IdP only
                user.save()
                state = "created"
            elif any(getattr(user, k) != v for k, v in wanted.items()):
                for key, value in wanted.items():
                    setattr(user, key, value)
                user.save(update_fields=list(wanted))
                state = "updated"
            else:
                state = "unchanged"
            done.append(f"User {demo.email} ({', '.join(demo.groups)}): {state}")
        if any(line.endswith((": created", ": updated")) for line in done):
            record_event("demo.seed", actor=actor, data={"changes": done}, now=now)
    return done
