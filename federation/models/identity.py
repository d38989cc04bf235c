"""Who signs in: identity providers, people, their sign-ins, and SAML request and replay records."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from federation.models.vocabulary import (
    SLUG_RE,
)


class IdentityProvider(models.Model):
    class Protocol(models.TextChoices):
        SAML = "saml", "SAML 2.0"
        OIDC = "oidc", "OpenID Connect"

    slug = models.CharField(max_length=63, unique=True, validators=[RegexValidator(SLUG_RE)])
    protocol = models.CharField(max_length=8, choices=Protocol.choices)
    display_name = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    # SAML entity id or OIDC issuer.
    entity_id = models.CharField(max_length=1024)
    groups_attribute = models.CharField(max_length=256, default="groups")
    email_attribute = models.CharField(max_length=256, default="email")
    manager_attribute = models.CharField(max_length=256, blank=True)
    # Protocol-specific settings (certificates, endpoints, client id); never secrets in clear.
    config = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(protocol__in=["saml", "oidc"]), name="idp_protocol_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class User(AbstractUser):
    """A person, keyed on their IdP and its immutable subject, never on email."""

    idp = models.ForeignKey(
        IdentityProvider, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    subject = models.CharField(max_length=512, blank=True)
    directory_groups = models.JSONField(default=list, blank=True)
    manager = models.CharField(max_length=320, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idp", "subject"],
                condition=Q(idp__isnull=False),
                name="user_unique_idp_subject",
            ),
        ]

    @property
    def label(self) -> str:
        return self.email or self.username


class SignIn(models.Model):
    """A completed sign-in, with the groups the IdP asserted at that moment (for audit)."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="sign_ins")
    idp = models.ForeignKey(IdentityProvider, on_delete=models.PROTECT, related_name="sign_ins")
    at = models.DateTimeField(default=timezone.now)
    groups = models.JSONField(default=list)
    ip = models.GenericIPAddressField(null=True, blank=True)
    auth_context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["user", "-at"])]

    def __str__(self) -> str:
        return f"sign-in of {self.user_id} at {self.at:%Y-%m-%d %H:%M}"


class SamlAuthnRequest(models.Model):
    """An AuthnRequest this service sent, so its response can be matched (SECURITY.md §1).

    Keyed by an opaque ``relay_state`` because the session cookie (SameSite=Lax) does not come
    back with the IdP's cross-site POST. Bound to the browser that started it by
    ``browser_binding``, the SHA-256 of a random cookie set at login start (login CSRF). Single
    use (``consumed_at``) and short-lived.
    """

    relay_state = models.CharField(max_length=64, unique=True)
    request_id = models.CharField(max_length=128, unique=True)
    idp = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="saml_requests"
    )
    next_path = models.CharField(max_length=2000, default="/")
    # Empty (requests started before the binding existed) matches no browser.
    browser_binding = models.CharField(max_length=64, default="")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"AuthnRequest {self.request_id} to {self.idp_id}"


class SamlConsumedAssertion(models.Model):
    """An accepted assertion id, kept until it expires so a replay fails on any instance."""

    idp = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="saml_consumed"
    )
    assertion_id = models.CharField(max_length=256)
    not_on_or_after = models.DateTimeField()
    consumed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idp", "assertion_id"], name="saml_assertion_used_once"
            ),
        ]
        indexes = [models.Index(fields=["not_on_or_after"])]

    def __str__(self) -> str:
        return f"assertion {self.assertion_id} from {self.idp_id}"
