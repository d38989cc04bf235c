"""``manage.py add_oidc_idp`` (SPEC §3.2): register or update an OpenID Connect IdP."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from federation.audit.chain import cli_actor
from federation.idp.oidc_registration import RegistrationRefused, register_oidc_idp


class Command(BaseCommand):
    help = (
        "Register (or update) an OpenID Connect identity provider from its discovery document. "
        "The client secret is stored encrypted, or read at run time from --client-secret-env."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True, help="short name used in /oidc/<slug>/")
        parser.add_argument("--issuer", required=True, help="the provider's issuer identifier")
        parser.add_argument("--client-id", required=True)
        secret = parser.add_mutually_exclusive_group(required=True)
        secret.add_argument(
            "--client-secret",
            help="the client secret ('-' to type it without echo, keeping it out of history)",
        )
        secret.add_argument(
            "--client-secret-env",
            metavar="VARIABLE",
            help="name of an environment variable that holds the secret at run time",
        )
        parser.add_argument("--groups-claim", default="groups")
        parser.add_argument("--email-claim", default="email")
        parser.add_argument(
            "--scopes", help="space-separated scopes (default: openid email profile [groups])"
        )
        parser.add_argument(
            "--id-token-alg", help="pin this ID token algorithm (default RS256 when offered)"
        )
        parser.add_argument("--display-name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        given = options["client_secret"]
        secret = getpass.getpass("Client secret: ") if given == "-" else given
        try:
            registration = register_oidc_idp(
                options["slug"],
                issuer=options["issuer"],
                client_id=options["client_id"],
                client_secret=secret,
                client_secret_env=options["client_secret_env"],
                groups_claim=options["groups_claim"],
                email_claim=options["email_claim"],
                scopes=options["scopes"],
                id_token_algorithm=options["id_token_alg"],
                display_name=options["display_name"],
                actor=cli_actor(),
                now=timezone.now(),
            )
        except RegistrationRefused as exc:
            raise CommandError(exc.message) from None
        idp = registration.idp
        verb = "Registered" if registration.created else "Updated"
        self.stdout.write(f"{verb} OpenID Connect identity provider {idp.slug!r}.")
        self.stdout.write(f"  issuer:        {idp.entity_id}")
        self.stdout.write(f"  client id:     {idp.config['client_id']}")
        self.stdout.write(f"  scopes:        {idp.config['scopes']}")
        self.stdout.write(f"  groups claim:  {idp.groups_attribute}")
        self.stdout.write(f"  ID token alg:  {', '.join(idp.config['id_token_algorithms'])}")
        self.stdout.write(
            f"Register this redirect URI at the provider: {registration.redirect_uri}"
        )
