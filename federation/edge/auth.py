"""Who a request's session belongs to: Django's ModelBackend, with the user read on every page
by a SELECT written once and prepared (``federation.rawsql``) instead of compiled by the ORM
each time.

Everything else is ModelBackend's: passwords (the local superuser), permissions, and the rule
that an inactive user is nobody (a leaver's session signs nobody in, whatever the session store
still holds). ``AUTHENTICATION_BACKENDS`` names this class alone.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from federation import rawsql
from federation.models import User

_SELECT_USER = f"SELECT {rawsql.columns(User, 'u')} FROM {User._meta.db_table} u WHERE u.id = %s"  # noqa: S608


class UserBackend(ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        try:
            pk = int(user_id)
        except (TypeError, ValueError):
            return None
        with rawsql.prepared_cursor() as cursor:
            cursor.execute(_SELECT_USER, [pk])
            row = cursor.fetchone()
        if row is None:
            return None
        user = rawsql.instance(User, row)
        return user if self.user_can_authenticate(user) else None
