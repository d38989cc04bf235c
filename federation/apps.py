"""App configuration for the core domain."""

from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The Celery app must exist before any task module is imported, so that @shared_task
        # binds to it (this used to be federation/__init__.py's job, which made the CLI slow).
        from django.contrib.auth.models import update_last_login
        from django.contrib.auth.signals import user_logged_in

        import federation.celery  # noqa: F401
        from federation.edge import checks  # noqa: F401 - registers the deploy check
        from federation.idp import saml_schemas

        # Once per process, here rather than at import: it replaces a python3-saml method.
        saml_schemas.install()

        # complete_sign_in() sets last_login in the same save as the person's groups; Django's
        # receiver would write it again in a second UPDATE on every sign-in. last_login thus
        # means "last IdP sign-in", which the API-token freshness check (tokens.py) relies on.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
