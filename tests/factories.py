"""One factory per model, with minimal valid defaults; a test sets only what it cares about."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from access_requests.models import AccessRequest, Approval, Grant
from federation.models import (
    Access,
    Account,
    AccountRole,
    BusinessUnit,
    EntitlementAccess,
    GroupMapping,
    IdentityProvider,
    LogicalRole,
    SessionIssuance,
    SignIn,
    User,
)


class BusinessUnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BusinessUnit
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"bu{n}")
    name = factory.LazyAttribute(lambda o: f"Business unit {o.slug}")
    approver_groups = factory.LazyAttribute(lambda o: [f"aws-{o.slug}-managers"])


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    account_id = factory.Sequence(lambda n: f"{100000000000 + n:012d}")
    alias = factory.Sequence(lambda n: f"account-{n}")
    business_unit = factory.SubFactory(BusinessUnitFactory)
    environment = "dev"
    approvals_required = factory.LazyAttribute(lambda o: Account.default_approvals(o.environment))


class LogicalRoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LogicalRole
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"role-{n}")
    max_session = timedelta(hours=1)


class AccountRoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccountRole

    account = factory.SubFactory(AccountFactory)
    role = factory.SubFactory(LogicalRoleFactory)
    role_arn = factory.LazyAttribute(lambda o: f"arn:aws:iam::{o.account.account_id}:role/custom")


class GroupMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GroupMapping

    group = factory.Sequence(lambda n: f"group-{n}")
    role = factory.SubFactory(LogicalRoleFactory)
    business_unit = factory.SubFactory(BusinessUnitFactory)
    access = Access.STANDING
    max_grant = factory.LazyAttribute(
        lambda o: timedelta(hours=4) if o.access == Access.ELIGIBLE else None
    )


class IdentityProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdentityProvider
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"idp{n}")
    protocol = IdentityProvider.Protocol.SAML
    entity_id = factory.LazyAttribute(lambda o: f"https://{o.slug}.idp.test/")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@corp.example")
    idp = factory.SubFactory(IdentityProviderFactory)
    subject = factory.LazyAttribute(lambda o: f"subject-{o.username}")
    directory_groups = factory.LazyFunction(list)


class SignInFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SignIn

    user = factory.SubFactory(UserFactory)
    idp = factory.LazyAttribute(lambda o: o.user.idp)
    groups = factory.LazyAttribute(lambda o: list(o.user.directory_groups))


class AccessRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessRequest

    requester = factory.SubFactory(UserFactory)
    account = factory.SubFactory(AccountFactory)
    role = factory.SubFactory(LogicalRoleFactory)
    justification = "investigating an incident"
    duration = timedelta(hours=1)
    created_at = factory.LazyFunction(timezone.now)
    decide_by = factory.LazyAttribute(lambda o: o.created_at + timedelta(hours=24))


class ApprovalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Approval

    request = factory.SubFactory(AccessRequestFactory)
    approver = factory.SubFactory(UserFactory)
    decision = Approval.Decision.APPROVE


class GrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grant

    request = factory.SubFactory(AccessRequestFactory, state=AccessRequest.State.APPROVED)
    user = factory.LazyAttribute(lambda o: o.request.requester)
    account = factory.LazyAttribute(lambda o: o.request.account)
    role = factory.LazyAttribute(lambda o: o.request.role)
    starts_at = factory.LazyFunction(timezone.now)
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(hours=1))


class SessionIssuanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SessionIssuance

    user = factory.SubFactory(UserFactory)
    account = factory.SubFactory(AccountFactory)
    role = factory.SubFactory(LogicalRoleFactory)
    kind = SessionIssuance.Kind.CONSOLE
    access = EntitlementAccess.STANDING
    role_arn = factory.LazyAttribute(
        lambda o: f"arn:aws:iam::{o.account.account_id}:role/{o.role.name}"
    )
    session_name = factory.LazyAttribute(lambda o: o.user.email)
    source_identity = factory.LazyAttribute(lambda o: o.user.email)
    region = "us-east-1"
    endpoint = "https://sts.us-east-1.amazonaws.com"
    duration = timedelta(hours=1)
    issued_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(lambda o: o.issued_at + o.duration)
