"""``manage.py scim_token --idp SLUG`` (SPEC §3.2): an IdP's SCIM bearer token, printed once."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.directory.tokens import ScimSetupRefused, create_scim_token, scim_subject_of
from federation.models import IdentityProvider, ScimSubject


class Command(BaseCommand):
    help = (
        "Create a SCIM bearer token for an IdP and print it once (only its hash is stored). "
        "The IdP's older tokens keep working for SCIM_TOKEN_GRACE_HOURS, then stop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--idp", required=True, help="the slug of a registered IdP")
        parser.add_argument(
            "--subject",
            choices=[s.value for s in ScimSubject],
            help="which SCIM attribute equals this IdP's sign-in subject (default userName; "
            "set it before the first user is provisioned)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        idp = IdentityProvider.objects.filter(slug=options["idp"]).first()
        if idp is None:
            raise CommandError(f"No IdP {options['idp']!r}; register it first.")
        subject = ScimSubject(options["subject"]) if options["subject"] else None
        try:
            created = create_scim_token(idp, actor=cli_actor(), now=timezone.now(), subject=subject)
        except ScimSetupRefused as refusal:
            raise CommandError(refusal.message) from None
        idp.refresh_from_db()
        self.stdout.write(created.plaintext)
        self.stderr.write(
            f"SCIM base URL: {settings.BASE_URL}/scim/v2/  (sign-in subject = SCIM "
            f"{scim_subject_of(idp).value}). The token is shown only now."
        )
        if created.retiring:
            self.stderr.write(
                f"{created.retiring} older token(s) keep working for "
                f"{settings.SCIM_TOKEN_GRACE_HOURS} hours."
            )
