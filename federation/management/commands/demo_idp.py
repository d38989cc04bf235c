"""`manage.py demo_idp`: point the ``demo`` IdP at the development IdP (demo mode only)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.demo.idp import configure_demo_idp, key_dir
from federation.idp.registry import RegistrationRefused


class Command(BaseCommand):
    help = (
        "Demo mode only: generate the development IdP's key under var/demo-idp/ (once) and "
        "store its certificate and sign-in URL on the 'demo' identity provider."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_MODE:
            raise CommandError("the development IdP exists only in demo mode: set DEMO_MODE=1")
        try:
            idp = configure_demo_idp(actor=cli_actor(), now=timezone.now())
        except RegistrationRefused as refusal:
            raise CommandError(refusal.message) from None
        self.stdout.write(
            f"demo IdP ready: sign in at {settings.BASE_URL}/saml/{idp.slug}/login/ "
            f"(key in {key_dir()})"
        )
