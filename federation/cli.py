"""``fedaccess``: the command-line client of the portal's JSON API (SPEC §3.5).

    fedaccess login [--url URL] [--no-browser | --paste | --token-stdin]   sign in, store a token
    fedaccess credentials --account A --role R       print credential_process JSON (cached)
    fedaccess config [--print]                       write (or print) the ~/.aws/config profiles
    fedaccess console --account A --role R [--print] open an AWS console sign-in link
    fedaccess request --account A --role R --minutes N --why TEXT [--wait S]   ask for access
    fedaccess break-glass --account A --role R --why TEXT [--minutes N]  access at once, reviewed
    fedaccess status                                 my roles, session lengths, grants' time left
    fedaccess logout                                 revoke the stored token and forget it

The token lives in ``~/.config/fedaccess/config.json`` (``$FEDACCESS_CONFIG_DIR`` or
``$XDG_CONFIG_HOME/fedaccess`` when set), readable by its owner only; cached credentials sit
beside it in ``cache/``, also 0600, keyed by portal, token, account, role and duration, and are
reused until shortly before they expire. ``FEDACCESS_URL`` and ``FEDACCESS_TOKEN`` override the
stored values (automation).

``fedaccess config`` keeps its profiles in one marked block of the AWS config file
(``$AWS_CONFIG_FILE`` or ``~/.aws/config``), rewritten in place on every run; no line outside the
block is ever changed.

A role that needs a fresh MFA sign-in (step-up) is refused with the URL of a portal page to
open in a browser; after signing in there with MFA, the same command succeeds.

Standard library only, on Python 3.9 or newer: this runs on every AWS CLI call that needs
credentials, and ``make cli`` packs it (with ``cli_portal.py`` and ``cli_aws_config.py``) into a
single-file zipapp (``dist/fedaccess.pyz``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from federation.cli_aws_config import aws_config
from federation.cli_portal import (
    CliError,
    PortalRefused,
    StepUpNeeded,
    _call,
    _check_url,
    _read_json,
    _settings,
    _write_private,
    config_dir,
)

# The cached answer of `fedaccess credentials` is the hot path (every AWS CLI call): what only the
# other commands need (getpass, socket, tempfile, webbrowser, and urllib.request in cli_portal)
# is imported inside the functions that use it. tests/federation/test_cli_imports.py checks.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, TextIO

# datetime.UTC is 3.11+; the client supports 3.9.
UTC = timezone.utc  # noqa: UP017

# Cached credentials are handed out only while more than this is left. botocore asks
# credential_process again before every call once under 10 minutes remain (its mandatory refresh
# window), so older ones would only be asked for again at once. It is below STS's 15-minute
# minimum session, so even the shortest session is reused for its first minutes.
REFRESH_MARGIN = timedelta(minutes=10)


def browser_token(
    url: str,
    *,
    open_browser: bool,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """A token by browser sign-in: show the portal URL and a code, let the person approve it
    there after signing in, and poll until the portal hands out the token (or refuses)."""
    import socket
    import webbrowser

    started = _call(url, "", "device/start", {"client": socket.gethostname()[:100]})
    page, code = str(started["verification_uri"]), str(started["user_code"])
    print(f"To sign in, open {page} and confirm the code {code}", file=out, flush=True)
    if open_browser:
        webbrowser.open(str(started.get("verification_uri_complete") or page))
    interval = max(1, int(started.get("interval", 5)))
    for _ in range(int(started.get("expires_in", 600)) // interval + 2):
        try:
            return str(
                _call(url, "", "device/token", {"device_code": started["device_code"]})["token"]
            )
        except PortalRefused as refusal:
            if refusal.code != "authorization_pending":
                raise
        sleep(interval)
    raise CliError("the sign-in code expired before it was approved; run fedaccess login again")


def login(
    url: str | None,
    token_stdin: bool,
    stdin: TextIO,
    *,
    paste: bool = False,
    open_browser: bool = True,
) -> str:
    url = url or os.environ.get("FEDACCESS_URL") or input("Portal URL: ").strip()
    url = _check_url(url)
    if token_stdin:
        token = stdin.readline().strip()
    elif paste:
        import getpass

        token = getpass.getpass(f"Personal API token (from {url}/tokens/): ").strip()
    else:
        token = browser_token(url, open_browser=open_browser, out=sys.stderr)
    if not token:
        raise CliError("no token given")
    entitlements = _call(url, token, "entitlements")["entitlements"]
    previous = _read_json(config_dir() / "config.json") or {}
    _write_private(config_dir() / "config.json", {"url": url, "token": token})
    if previous.get("token") and previous.get("token") != token:
        _forget_token(str(previous.get("url", "")), str(previous["token"]))
    return f"Logged in to {url}: {len(entitlements)} entitlement(s). Next: fedaccess config"


def logout() -> str:
    """Revoke the stored token at the portal, then forget it and its cached credentials."""
    stored = _read_json(config_dir() / "config.json") or {}
    url, token = str(stored.get("url", "")), str(stored.get("token", ""))
    if not token:
        return "Not logged in: nothing to do."
    url = _check_url(url)
    try:
        _call(url, token, "token/revoke", {})
        done = "revoked at the portal"
    except PortalRefused as refusal:
        if refusal.status != 401:
            raise
        done = "already refused by the portal"
    _forget_token(url, token)
    _write_private(config_dir() / "config.json", {"url": url})
    return f"Logged out of {url}: the token is {done} and forgotten here."


def _left(until: datetime, now: datetime) -> str:
    minutes = max(0, int((until - now).total_seconds() // 60))
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if hours else f"{rest} min"


def status(*, now: datetime) -> str:
    """My entitlements: what each profile gives now, and how long grants have left."""
    url, token = _settings()
    entitlements = _call(url, token, "entitlements")["entitlements"]
    if not entitlements:
        return f"{url}: no access to any AWS account through your directory groups.\n"
    rows = [("PROFILE", "ACCOUNT", "ACCESS", "SESSIONS")]
    for e in entitlements:
        session = _left(now + timedelta(seconds=int(e["max_session_seconds"])), now)
        if not e["usable"]:
            what = f"eligible only: request it at {url}/requests/"
        elif e.get("grant_ends_at"):
            ends = datetime.fromisoformat(str(e["grant_ends_at"]).replace("Z", "+00:00"))
            what = f"up to {session}; grant ends in {_left(ends, now)} ({ends:%H:%M} UTC)"
        else:
            what = f"up to {session}"
        rows.append((f"{e['account_alias']}.{e['role']}", e["account"], e["access"], what))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}\n" for r in rows
    )


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def _cache_dir(url: str, token: str) -> Path:
    # One folder per (portal, token): a new or revoked token never sees another token's entries.
    return (
        config_dir()
        / "cache"
        / hashlib.sha256(f"{url}\x00{_token_id(token)}".encode()).hexdigest()[:24]
    )


def _cache_path(url: str, token: str, account: str, role: str, duration: int | None) -> Path:
    # Everything that changes the portal's answer is in the key.
    key = hashlib.sha256(f"{account}\x00{role}\x00{duration or ''}".encode()).hexdigest()[:24]
    return _cache_dir(url, token) / f"{key}.json"


def _fresh(cached: dict[str, Any] | None, now: datetime) -> bool:
    if not cached or cached.get("Version") != 1:
        return False
    try:
        expiration = datetime.fromisoformat(str(cached["Expiration"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return False
    return expiration - now > REFRESH_MARGIN


def _forget(path: Path) -> None:
    path.unlink(missing_ok=True)


def _forget_token(url: str, token: str) -> None:
    folder = _cache_dir(url, token)
    if folder.is_dir():
        for entry in folder.iterdir():
            entry.unlink(missing_ok=True)
        folder.rmdir()


def credentials(
    account: str, role: str, duration: int | None, use_cache: bool, *, now: datetime
) -> dict[str, Any]:
    url, token = _settings()
    path = _cache_path(url, token, account, role, duration)
    if use_cache:
        cached = _read_json(path)
        if _fresh(cached, now):
            assert cached is not None
            return cached
    body: dict[str, Any] = {"account": account, "role": role}
    if duration is not None:
        body["duration_seconds"] = duration
    try:
        issued = _call(url, token, "credentials", body)
    except StepUpNeeded:
        _forget(path)
        raise
    except PortalRefused as refusal:
        # A refused token or grant: whatever was cached for it must not be handed out again.
        if refusal.status == 401:
            _forget_token(url, token)
        elif refusal.status == 403:
            _forget(path)
        raise
    if not isinstance(issued, dict) or issued.get("Version") != 1:
        raise CliError("the portal returned something other than credentials")
    if use_cache:
        _write_private(path, issued)
    return issued


def console(account: str, role: str, duration: int | None) -> str:
    """A console sign-in link (never cached: it is single use, and a bearer login)."""
    url, token = _settings()
    body: dict[str, Any] = {"account": account, "role": role}
    if duration is not None:
        body["duration_seconds"] = duration
    answer = _call(url, token, "console", body)
    link = str(answer.get("SigninUrl", "")) if isinstance(answer, dict) else ""
    if not link.startswith("https://") and not link.startswith(url):
        raise CliError("the portal returned something other than a console link")
    return link


def break_glass(account: str, role: str, why: str, minutes: int | None) -> str:
    """Activate a break-glass row at once (SPEC §4 Break-glass); the approvers and the security
    contacts are told, and someone else reviews it afterwards."""
    url, token = _settings()
    body: dict[str, Any] = {"account": account, "role": role, "justification": why}
    if minutes is not None:
        body["minutes"] = minutes
    done = _call(url, token, "break-glass", body)
    return (
        f"Break-glass #{done['request_id']}: {role} in {account} is yours until "
        f"{done['grant_ends_at']}. The approvers and security contacts have been notified. "
        f"Get credentials with `fedaccess credentials --account {account} --role {role}`."
    )


WAIT_POLL_SECONDS = 10


def file_request(
    account: str, role: str, minutes: int, why: str, ticket: str, *, wait: float | None
) -> str:
    """File an access request; with ``wait`` (seconds), poll until it is decided or that passes."""
    url, token = _settings()
    body = {"account": account, "role": role, "minutes": minutes, "justification": why}
    if ticket:
        body["ticket"] = ticket
    filed = _call(url, token, "requests", body)
    line = f"Request #{filed['id']} for {role} in {account}: {filed['state']}"
    if wait is None:
        return f"{line}. Approvers decide at {url}/approvals/; see it at {url}/requests/."
    deadline = time.monotonic() + wait
    while filed["state"] == "pending" and time.monotonic() < deadline:
        time.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        filed = _call(url, token, f"requests/{filed['id']}")
    line = f"Request #{filed['id']} for {role} in {account}: {filed['state']}"
    if filed.get("grant_ends_at"):
        line += f"; the grant ends at {filed['grant_ends_at']}"
    return line


def session_note(issued: dict[str, Any], asked: int | None, *, now: datetime) -> str:
    """How long the session really lasts: the grant's end or the role's limit may cut it."""
    expiration = datetime.fromisoformat(str(issued["Expiration"]).replace("Z", "+00:00"))
    minutes = max(0, round((expiration - now).total_seconds() / 60))
    note = f"session lasts {minutes} min, until {expiration:%Y-%m-%d %H:%M} UTC"
    if asked is not None and minutes < asked // 60:
        note += f" (asked for {asked // 60} min: capped by the role or the grant)"
    return note


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog="fedaccess", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_login = commands.add_parser(
        "login", help="sign in through the browser (or paste a token) and store the token"
    )
    p_login.add_argument("--url", help="the portal URL, e.g. https://aws-access.example.com")
    how = p_login.add_mutually_exclusive_group()
    how.add_argument("--token-stdin", action="store_true", help="read a token from stdin")
    how.add_argument("--paste", action="store_true", help="paste a token from the tokens page")
    p_login.add_argument(
        "--no-browser", action="store_true", help="print the sign-in page, do not open it"
    )
    commands.add_parser("logout", help="revoke the stored token and forget it")
    commands.add_parser("status", help="my accounts and roles, and the time left on grants")
    p_console = commands.add_parser("console", help="open (or --print) an AWS console link")
    p_console.add_argument("--account", required=True, help="12-digit AWS account id")
    p_console.add_argument("--role", required=True, help="logical role name")
    p_console.add_argument("--duration", type=int, help="session length in seconds")
    p_console.add_argument(
        "--print", action="store_true", help="print the link instead of opening a browser"
    )
    p_request = commands.add_parser("request", help="ask for time-bound access to a role")
    p_request.add_argument("--account", required=True, help="12-digit AWS account id")
    p_request.add_argument("--role", required=True, help="logical role name")
    p_request.add_argument("--minutes", type=int, required=True, help="how long the grant lasts")
    p_request.add_argument("--why", required=True, help="the justification approvers read")
    p_request.add_argument("--ticket", default="", help="a ticket reference")
    p_request.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for the decision"
    )
    p_glass = commands.add_parser(
        "break-glass", help="take a break-glass role at once (reviewed afterwards)"
    )
    p_glass.add_argument("--account", required=True, help="12-digit AWS account id")
    p_glass.add_argument("--role", required=True, help="logical role name")
    p_glass.add_argument("--why", required=True, help="the justification reviewers read")
    p_glass.add_argument("--minutes", type=int, help="how long (default: the row's maximum)")
    p_creds = commands.add_parser("credentials", help="print credential_process JSON")
    p_creds.add_argument("--account", required=True, help="12-digit AWS account id")
    p_creds.add_argument("--role", required=True, help="logical role name")
    p_creds.add_argument("--duration", type=int, help="requested session length in seconds")
    p_creds.add_argument("--no-cache", action="store_true", help="always ask the portal")
    p_config = commands.add_parser(
        "config", help="write my profiles into a managed block of ~/.aws/config"
    )
    p_config.add_argument(
        "--print", action="store_true", help="print the block instead of writing the file"
    )
    return parser


_CREDENTIALS_OPTIONS = {"--account": "account", "--role": "role", "--duration": "duration"}


def _credentials_args(argv: list[str]) -> SimpleNamespace | None:
    """``credentials --account A --role R [--duration N] [--no-cache]``, the line every profile's
    credential_process runs, read without argparse: building the whole parser (and the shutil it
    imports) was a third of a cached answer's time. Anything else (help, ``--opt=value``, an
    abbreviation, a repeated option, a value starting with ``-``, a duration that is not a
    number, a missing option) gives None, and argparse reads it and names the fault."""
    if not argv or argv[0] != "credentials":
        return None
    found: dict[str, Any] = {}
    rest = argv[1:]
    while rest:
        option = rest.pop(0)
        if option == "--no-cache" and "no_cache" not in found:
            found["no_cache"] = True
            continue
        name = _CREDENTIALS_OPTIONS.get(option)
        if name is None or name in found or not rest or rest[0].startswith("-"):
            return None
        found[name] = rest.pop(0)
    if "account" not in found or "role" not in found:
        return None
    if "duration" in found:
        try:
            found["duration"] = int(found["duration"])  # as argparse's type=int
        except ValueError:
            return None
    return SimpleNamespace(
        command="credentials",
        account=found["account"],
        role=found["role"],
        duration=found.get("duration"),
        no_cache=found.get("no_cache", False),
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _credentials_args(argv) or _parser().parse_args(argv)
    try:
        if args.command == "login":
            print(
                login(
                    args.url,
                    args.token_stdin,
                    sys.stdin,
                    paste=args.paste,
                    open_browser=not args.no_browser,
                ),
                file=sys.stderr,
            )
        elif args.command == "logout":
            print(logout(), file=sys.stderr)
        elif args.command == "status":
            sys.stdout.write(status(now=datetime.now(UTC)))
        elif args.command == "request":
            print(
                file_request(
                    args.account, args.role, args.minutes, args.why, args.ticket, wait=args.wait
                )
            )
        elif args.command == "break-glass":
            print(break_glass(args.account, args.role, args.why, args.minutes))
        elif args.command == "console":
            import webbrowser

            link = console(args.account, args.role, args.duration)
            if args.print or not webbrowser.open(link):
                print(link)
            else:
                print(f"fedaccess: opened the AWS console as {args.role}", file=sys.stderr)
        elif args.command == "credentials":
            now = datetime.now(UTC)
            result = credentials(args.account, args.role, args.duration, not args.no_cache, now=now)
            print(json.dumps(result))
            # stderr: shown in a terminal, ignored by botocore's credential_process.
            print(f"fedaccess: {session_note(result, args.duration, now=now)}", file=sys.stderr)
        elif args.print:
            sys.stdout.write(aws_config(write=False))
        else:
            print(aws_config(write=True), file=sys.stderr)
    except CliError as error:
        print(f"fedaccess: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
