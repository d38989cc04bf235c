"""``fedaccess``: the command-line client of the portal's JSON API (SPEC §3.5).

    fedaccess login [--url URL] [--token-stdin]     store a personal API token
    fedaccess credentials --account A --role R       print credential_process JSON (cached)
    fedaccess config                                 print ~/.aws/config profiles

The token lives in ``~/.config/fedaccess/config.json`` (``$FEDACCESS_CONFIG_DIR`` or
``$XDG_CONFIG_HOME/fedaccess`` when set), readable by its owner only; cached credentials sit
beside it in ``cache/``, also 0600, and are reused until shortly before they expire.
``FEDACCESS_URL`` and ``FEDACCESS_TOKEN`` override the stored values (automation).

Standard library only: this runs on every AWS CLI call that needs credentials.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

# botocore asks credential_process again once credentials have under 15 minutes left (its
# advisory refresh window): cached ones are handed out only while they are clear of it.
REFRESH_MARGIN = timedelta(minutes=15)
TIMEOUT_SECONDS = 30
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class CliError(Exception):
    pass


def config_dir() -> Path:
    explicit = os.environ.get("FEDACCESS_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fedaccess"


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically (no half-written file, ever 0600)."""
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
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in _check_url
        f"{url}/api/v1/{path}",
        data=data,
        method="POST" if data is not None else "GET",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "fedaccess-cli/1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            detail = json.load(error)
            message = f"{detail.get('message')} ({detail.get('error')})"
        except (ValueError, AttributeError):
            message = error.reason
        raise CliError(f"the portal answered {error.code}: {message}") from None
    except urllib.error.URLError as error:
        raise CliError(f"cannot reach the portal at {url}: {error.reason}") from None


def login(url: str | None, token_stdin: bool, stdin: TextIO) -> str:
    url = url or os.environ.get("FEDACCESS_URL") or input("Portal URL: ").strip()
    url = _check_url(url)
    if token_stdin:
        token = stdin.readline().strip()
    else:
        token = getpass.getpass(f"Personal API token (from {url}/tokens/): ").strip()
    if not token:
        raise CliError("no token given")
    entitlements = _call(url, token, "entitlements")["entitlements"]
    _write_private(config_dir() / "config.json", {"url": url, "token": token})
    return f"Logged in to {url}: {len(entitlements)} entitlement(s). Next: fedaccess config"


def _cache_path(url: str, account: str, role: str) -> Path:
    key = hashlib.sha256(f"{url}\x00{account}\x00{role}".encode()).hexdigest()[:24]
    return config_dir() / "cache" / f"{key}.json"


def _fresh(cached: dict[str, Any] | None, now: datetime) -> bool:
    if not cached or cached.get("Version") != 1:
        return False
    try:
        expiration = datetime.fromisoformat(str(cached["Expiration"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return False
    return expiration - now > REFRESH_MARGIN


def credentials(
    account: str, role: str, duration: int | None, use_cache: bool, *, now: datetime
) -> dict[str, Any]:
    url, token = _settings()
    path = _cache_path(url, account, role)
    if use_cache:
        cached = _read_json(path)
        if _fresh(cached, now):
            assert cached is not None
            return cached
    body: dict[str, Any] = {"account": account, "role": role}
    if duration is not None:
        body["duration_seconds"] = duration
    issued = _call(url, token, "credentials", body)
    if not isinstance(issued, dict) or issued.get("Version") != 1:
        raise CliError("the portal returned something other than credentials")
    if use_cache:
        _write_private(path, issued)
    return issued


def aws_config() -> str:
    url, token = _settings()
    entitlements = _call(url, token, "entitlements")["entitlements"]
    lines = [f"# AWS profiles from {url} (generated by `fedaccess config`)"]
    for e in entitlements:
        lines.append("")
        if not e["usable"]:
            lines.append(f"# eligible only: request access at {url}/requests/ first")
        lines.append(f"[profile {e['account_alias']}.{e['role']}]")
        lines.append(
            f"credential_process = fedaccess credentials --account {e['account']} "
            f"--role {e['role']}"
        )
        lines.append(f"region = {e['region']}")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedaccess", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_login = commands.add_parser("login", help="store a personal API token from the portal")
    p_login.add_argument("--url", help="the portal URL, e.g. https://aws-access.example.com")
    p_login.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    p_creds = commands.add_parser("credentials", help="print credential_process JSON")
    p_creds.add_argument("--account", required=True, help="12-digit AWS account id")
    p_creds.add_argument("--role", required=True, help="logical role name")
    p_creds.add_argument("--duration", type=int, help="requested session length in seconds")
    p_creds.add_argument("--no-cache", action="store_true", help="always ask the portal")
    commands.add_parser("config", help="print ~/.aws/config profiles for my entitlements")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "login":
            print(login(args.url, args.token_stdin, sys.stdin), file=sys.stderr)
        elif args.command == "credentials":
            result = credentials(
                args.account, args.role, args.duration, not args.no_cache, now=datetime.now(UTC)
            )
            print(json.dumps(result))
        else:
            sys.stdout.write(aws_config())
    except CliError as error:
        print(f"fedaccess: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
