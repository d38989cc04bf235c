"""Give every existing identity its person (data step of 0010_person).

The rule is the sign-in rule (federation/idp/signin.py) without the IdP's say, which the
database does not keep: identities at *different* IdPs that share an email address (compared
case-insensitively) become one person when the link is unambiguous, that is when every one of
them is active and no IdP holds two of them (two at one IdP is a recycled address). Every other
identity becomes a person of its own.
"""

from collections import defaultdict
from typing import Any

from django.db import migrations


def link_people(apps: Any, schema_editor: Any) -> None:
    User = apps.get_model("federation", "User")
    Person = apps.get_model("federation", "Person")
    by_email: dict[str, list[Any]] = defaultdict(list)
    alone: list[Any] = []
    for user in User.objects.filter(person__isnull=True).order_by("pk"):
        email = (user.email or "").strip().casefold()
        if email and user.idp_id is not None:
            by_email[email].append(user)
        else:
            alone.append(user)
    for group in by_email.values():
        idps = [u.idp_id for u in group]
        if len(group) > 1 and len(set(idps)) == len(idps) and all(u.is_active for u in group):
            person = Person.objects.create()
            User.objects.filter(pk__in=[u.pk for u in group]).update(person=person)
        else:
            alone.extend(group)
    for user in alone:
        user.person = Person.objects.create()
        user.save(update_fields=["person"])


def unlink_people(apps: Any, schema_editor: Any) -> None:
    apps.get_model("federation", "User").objects.update(person=None)
    apps.get_model("federation", "Person").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("federation", "0010_person"),
    ]

    operations = [
        migrations.RunPython(link_people, unlink_people),
    ]
