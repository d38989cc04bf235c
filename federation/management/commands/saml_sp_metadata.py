"""`manage.py saml_sp_metadata --idp S`: this service's SP metadata XML for that IdP."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from federation.idp.identity import SignInRefused
from federation.idp.saml import sp_metadata
from federation.models import IdentityProvider


class Command(BaseCommand):
    help = "Print this service's SAML SP metadata (entity id, ACS URL) for one identity provider."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--idp", required=True, help="the IdP's slug")

    def handle(self, *args: Any, **options: Any) -> None:
        idp = IdentityProvider.objects.filter(
            slug=options["idp"], protocol=IdentityProvider.Protocol.SAML
        ).first()
        if idp is None:
            raise CommandError(f"no SAML identity provider with slug {options['idp']!r}")
        try:
            self.stdout.write(sp_metadata(idp))
        except SignInRefused as refusal:
            raise CommandError(refusal.message) from None
