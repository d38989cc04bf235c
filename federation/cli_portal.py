"""The ``fedaccess`` client's side of the portal: where its token lives, and the one HTTP call
to the JSON API with its errors (a refusal, a step-up to open in a browser). Standard library
only, like ``federation/cli.py``, which runs on every AWS CLI call that needs credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

# Imported only where the portal is called or a file written: a cached answer needs neither, and
# urllib.request (with http.client, email, ssl) is most of what starting the client costs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TIMEOUT_SECONDS = 30
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class CliError(Exception):
    pass


class PortalRefused(CliError):
    def __init__(self, status: int, message: str, *, code: str = "", step_up_url: str = "") -> None:
        super().__init__(f"the portal answered {status}: {message}")
        self.status = status
        self.code = code
        self.step_up_url = step_up_url


class StepUpNeeded(CliError):
    """The role needs a fresh MFA sign-in (SPEC §4 Step-up): made in a browser, at ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(
            "this role needs a fresh sign-in with multi-factor authentication. Open this URL "
            f"in your browser, sign in, then run the command again:\n{url}"
        )
        self.url = url


def config_dir() -> Path:
    explicit = os.environ.get("FEDACCESS_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fedaccess"


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically (no half-written file, ever 0600)."""
    import tempfile

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url.rstrip("/")
    raise CliError(f"the portal URL must be https:// (plain http only on loopback): {url!r}")


def _settings() -> tuple[str, str]:
    stored = _read_json(config_dir() / "config.json") or {}
    url = os.environ.get("FEDACCESS_URL") or str(stored.get("url", ""))
    token = os.environ.get("FEDACCESS_TOKEN") or str(stored.get("token", ""))
    if not url or not token:
        raise CliError("not logged in: run `fedaccess login --url https://<portal>` first")
    return _check_url(url), token


def _call(url: str, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in _check_url
        f"{url}/api/v1/{path}",
        data=data,
        method="POST" if data is not None else "GET",
        headers={
            # The browser login's two calls have no token yet.
            **({"Authorization": f"Bearer {token}"} if token else {}),
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "fedaccess-cli/1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as error:
        code = step_up_url = ""
        try:
            detail = json.load(error)
            message = f"{detail.get('message')} ({detail.get('error')})"
            code = str(detail.get("error") or "")
            step_up_url = str(detail.get("step_up_url") or "")
        except (ValueError, AttributeError):
            message = error.reason
        if code == "step_up_required" and step_up_url.startswith(url + "/"):
            # Only a page of the portal itself is offered to open.
            raise StepUpNeeded(step_up_url) from None
        raise PortalRefused(error.code, str(message), code=code) from None
    except urllib.error.URLError as error:
        raise CliError(f"cannot reach the portal at {url}: {error.reason}") from None
