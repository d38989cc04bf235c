"""OIDC client secrets at rest: sealed with Fernet, or named by an environment variable.

The key is derived with HKDF from ``OIDC_SECRET_KEY`` when set, else from ``SECRET_KEY``. A
dedicated key lets ``SECRET_KEY`` rotate without re-registering every provider; rotating the key
in use means running ``add_oidc_idp`` again for each OIDC provider. A sealed secret is never
printed, logged or audited; only ``resolve_client_secret`` opens it, for the token request.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from federation.refusals import Refused

SEALED_KEY = "client_secret_sealed"
ENV_KEY = "client_secret_env"


class ClientSecretUnavailable(Refused):
    """The configured secret cannot be opened (key changed) or its variable is unset."""

    code = "oidc.client_secret_unavailable"
    status = 503


def _fernet() -> Fernet:
    material = (settings.OIDC_SECRET_KEY or settings.SECRET_KEY).encode()
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedaccess oidc client secret"
    ).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


def seal_client_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def resolve_client_secret(config: Mapping[str, Any]) -> str:
    """The plaintext secret for the token request, from the environment or the sealed value."""
    env_name = config.get(ENV_KEY)
    if env_name:
        value = os.environ.get(str(env_name), "")
        if not value:
            raise ClientSecretUnavailable(f"environment variable {env_name} is not set")
        return value
    sealed = config.get(SEALED_KEY)
    if not sealed:
        raise ClientSecretUnavailable("no client secret is configured")
    try:
        return _fernet().decrypt(str(sealed).encode("ascii")).decode()
    except InvalidToken:
        raise ClientSecretUnavailable(
            "the sealed client secret does not open with the current key "
            "(OIDC_SECRET_KEY or SECRET_KEY changed); register the provider again"
        ) from None
