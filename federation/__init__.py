"""Federation identity-mapping service: project wiring and the core domain.

Deliberately empty: ``federation.cli`` (the ``fedaccess`` client that the AWS CLI runs on every
credentialed command) must import only the standard library, so nothing here may pull in Django
or Celery. The Celery app is loaded by ``FederationConfig.ready()`` and found by
``celery -A federation`` in ``federation/celery.py``.
"""
