"""`manage.py add_saml_idp`: register (or update) a SAML IdP from its metadata (SPEC §3.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from federation.audit.chain import cli_actor
from federation.idp.mfa import DEFAULT_SAML_MFA_CONTEXTS, mfa_contexts
from federation.idp.registry import RegistrationRefused
from federation.idp.saml import acs_url, sp_entity_id
from federation.idp.saml_metadata import MetadataRefused, fetch_metadata, register_saml_idp


class Command(BaseCommand):
    help = (
        "Register a SAML identity provider from its metadata (file or URL). Every signing "
        "certificate is kept so a rollover works; a metadata URL is refreshed periodically."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True, help="short name used in URLs, e.g. okta")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--metadata-file", type=Path)
        source.add_argument("--metadata-url")
        parser.add_argument("--groups-attribute", default="groups")
        parser.add_argument("--email-attribute", default="email")
        parser.add_argument("--manager-attribute", default="")
        parser.add_argument(
            "--subject-attribute",
            default="",
            help="attribute holding the immutable user id (default: the persistent NameID)",
        )
        parser.add_argument("--display-name", default="")
        parser.add_argument(
            "--want-messages-signed",
            action="store_true",
            help="also require the whole Response to be signed (not only the assertion)",
        )
        parser.add_argument(
            "--mfa-authn-contexts",
            default=None,
            help="comma-separated AuthnContextClassRef (or authentication-method) URIs that count "
            "as MFA; default: " + ", ".join(DEFAULT_SAML_MFA_CONTEXTS),
        )
        parser.add_argument(
            "--no-requested-authn-context",
            action="store_true",
            help="ask for a fresh sign-in with ForceAuthn only, without naming the MFA classes "
            "in a RequestedAuthnContext (Entra ID refuses classes it does not issue)",
        )
        parser.add_argument(
            "--metadata-signing-cert",
            type=Path,
            help="PEM certificate that must have signed the metadata (refused if unsigned)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        signing_cert = ""
        if options["metadata_signing_cert"]:
            pem = options["metadata_signing_cert"].read_text()
            signing_cert = OneLogin_Saml2_Utils.format_cert(pem, heads=False)
        try:
            if options["metadata_file"]:
                try:
                    document = options["metadata_file"].read_bytes()
                except OSError as err:
                    raise MetadataRefused(
                        f"cannot read the metadata file ({err.strerror})"
                    ) from None
            else:
                document = fetch_metadata(options["metadata_url"])
            idp = register_saml_idp(
                options["slug"],
                document=document,
                metadata_url=options["metadata_url"] or "",
                metadata_signing_cert=signing_cert,
                groups_attribute=options["groups_attribute"],
                email_attribute=options["email_attribute"],
                manager_attribute=options["manager_attribute"],
                subject_attribute=options["subject_attribute"],
                display_name=options["display_name"],
                want_messages_signed=options["want_messages_signed"],
                mfa_authn_contexts=_uri_list(options["mfa_authn_contexts"]),
                request_authn_context=not options["no_requested_authn_context"],
                actor=cli_actor(),
                now=timezone.now(),
            )
        except MetadataRefused as refusal:
            raise CommandError(f"metadata refused: {refusal.message}") from None
        except RegistrationRefused as refusal:
            raise CommandError(refusal.message) from None
        certs = len(idp.config.get("signing_certs", []))
        mfa = ", ".join(sorted(mfa_contexts(idp)))
        self.stdout.write(
            f"SAML identity provider {idp.slug!r} saved: entity id {idp.entity_id}, "
            f"{certs} signing certificate(s); MFA classes: {mfa}.\n"
            f"Configure the IdP with: ACS URL {acs_url(idp)}  entity id / audience "
            f"{sp_entity_id(idp)}  (or `manage.py saml_sp_metadata --idp {idp.slug}`)."
        )


def _uri_list(value: str | None) -> tuple[str, ...] | None:
    """``--mfa-authn-contexts`` as a tuple; None when not given (keep what is stored)."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    for item in items:
        if any(ch.isspace() for ch in item) or len(item) > 1024:
            raise CommandError(f"--mfa-authn-contexts: {item[:80]!r} is not a URI")
    if not items:
        raise CommandError("--mfa-authn-contexts: give at least one URI")
    return items
