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
    # The authentication context classes (SAML AuthnContextClassRef, or values of the
    # authentication-methods attribute) and OIDC ``acr`` / ``amr`` values that count as MFA
    # (federation/idp/mfa.py; SPEC §4 Step-up).
    mfa_authn_contexts = models.JSONField(default=list, blank=True)
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


class Person(models.Model):
    """One human being, whichever IdP they sign in through (docs/access-requests.md, "One
    person, many identities").

    Each sign-in identity (a ``User``: IdP + immutable subject) links to one person. The person
    is what separation of duties compares (no approving or applying one's own change through a
    second IdP); access is never shared through it: grants, tokens and sessions stay with the
    identity that earned them.
    """

    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"person #{self.pk}"


class User(AbstractUser):
    """One sign-in identity, keyed on its IdP and that IdP's immutable subject, never on email;
    ``person`` is the human behind it (empty only for accounts that never signed in through an
    IdP, such as a local superuser)."""

    idp = models.ForeignKey(
        IdentityProvider, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    subject = models.CharField(max_length=512, blank=True)
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="identities"
    )
    # The most recent group statement, from a sign-in or from SCIM (SPEC §4 Directory sync):
    # whichever came last wins; both are kept for audit (SignIn.groups, the SCIM audit events).
    directory_groups = models.JSONField(default=list, blank=True)
    groups_source = models.CharField(
        max_length=8, choices=[("signin", "sign-in"), ("scim", "SCIM")], blank=True
    )
    groups_updated_at = models.DateTimeField(null=True, blank=True)
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

    def is_same_person(self, other: User) -> bool:
        """Whether ``other`` may be this human through another identity: the same identity, the
        same person, or an identity at *another* IdP with the same email address (one the email
        rule declined to link, e.g. an OIDC address not marked verified).

        For refusals only (self-approval, self-apply, one vote per person): wider than the link,
        so an unlinked twin still cannot approve for itself; never a reason to grant anything.
        Within one IdP only the subject counts: a recycled address there is another person.
        """
        if self.pk is not None and self.pk == other.pk:
            return True
        if self.person_id is not None and self.person_id == other.person_id:
            return True
        if (
            self.idp_id
            and self.subject
            and (self.idp_id, self.subject)
            == (
                other.idp_id,
                other.subject,
            )
        ):
            return True
        if self.idp_id == other.idp_id:
            return False
        mine, theirs = self.email.strip().casefold(), other.email.strip().casefold()
        return bool(mine) and mine == theirs


class SignIn(models.Model):
    """A completed sign-in, with the groups the IdP asserted at that moment (for audit)."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="sign_ins")
    idp = models.ForeignKey(IdentityProvider, on_delete=models.PROTECT, related_name="sign_ins")
    at = models.DateTimeField(default=timezone.now)
    groups = models.JSONField(default=list)
    ip = models.GenericIPAddressField(null=True, blank=True)
    auth_context = models.JSONField(default=dict, blank=True)
    # What the IdP asserted about the authentication (federation/idp/mfa.py): whether it was
    # multi-factor, and when it happened (SAML AuthnInstant, OIDC auth_time); NULL when the IdP
    # did not say, which no step-up accepts.
    mfa = models.BooleanField(default=False)
    authenticated_at = models.DateTimeField(null=True, blank=True)

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
