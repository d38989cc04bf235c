"""``fedaccess config``: the client's profiles in one marked block of the AWS config file
(``$AWS_CONFIG_FILE`` or ``~/.aws/config``), rewritten in place on every run; no line outside the
block is ever changed. Standard library only, on Python 3.9 or newer, like ``federation/cli.py``
(and packed with it by ``make cli``)."""

from __future__ import annotations

import os
from pathlib import Path

from federation.cli_portal import CliError, _call, _settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BLOCK_BEGIN = "# >>> fedaccess managed block for {url}: `fedaccess config` rewrites it >>>"
BLOCK_END = "# <<< fedaccess managed block for {url} <<<"


def aws_config_path() -> Path:
    explicit = os.environ.get("AWS_CONFIG_FILE")
    return Path(explicit).expanduser() if explicit else Path.home() / ".aws" / "config"


def _sections(lines: list[str]) -> set[str]:
    return {
        line.strip()[1:-1].strip()
        for line in lines
        if line.strip().startswith("[") and line.strip().endswith("]")
    }


def config_block(url: str, entitlements: list[dict[str, Any]], taken: set[str]) -> list[str]:
    """The managed block: a working profile per usable role; eligible-only roles as comments,
    since their credential_process would fail until a request is approved."""
    lines = [BLOCK_BEGIN.format(url=url)]
    eligible = []
    for e in entitlements:
        name = f"{e['account_alias']}.{e['role']}"
        if not e["usable"]:
            eligible.append(name)
            continue
        if f"profile {name}" in taken:
            lines.append(f"# {name}: a profile of that name exists outside this block; left alone")
            continue
        lines += [
            f"[profile {name}]",
            f"credential_process = fedaccess credentials --account {e['account']} "
            f"--role {e['role']}",
            f"region = {e['region']}",
            "",
        ]
    for name in eligible:
        lines.append(f"# {name}: eligible only; request access at {url}/requests/ first")
    if lines[-1] == "":
        lines.pop()
    lines.append(BLOCK_END.format(url=url))
    return lines


def _split_config(text: str, url: str) -> tuple[list[str], list[str]]:
    """The file's lines before and after our block (the block itself dropped)."""
    lines = text.splitlines()
    begin, end = BLOCK_BEGIN.format(url=url), BLOCK_END.format(url=url)
    if begin not in lines:
        if end in lines:
            raise CliError("the AWS config file has the end of a fedaccess block but no start")
        return lines, []
    start = lines.index(begin)
    if end not in lines[start:]:
        raise CliError(
            "the fedaccess block in the AWS config file has no end marker: fix the file by hand"
        )
    stop = lines.index(end, start)
    return lines[:start], lines[stop + 1 :]


def aws_config(*, write: bool) -> str:
    url, token = _settings()
    entitlements = _call(url, token, "entitlements")["entitlements"]
    path = aws_config_path()
    if not write:
        return "\n".join(config_block(url, entitlements, set())) + "\n"
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    before, after = _split_config(text, url)
    block = config_block(url, entitlements, _sections(before + after))
    if before and before[-1].strip():
        block.insert(0, "")
    new = "\n".join(before + block + after) + "\n"
    _write_text_keeping_mode(path, new)
    usable = sum(1 for e in entitlements if e["usable"])
    return f"Wrote {usable} profile(s) to {path} (in the fedaccess block; nothing else changed)."


def _write_text_keeping_mode(path: Path, text: str) -> None:
    import stat
    import tempfile

    target = Path(os.path.realpath(path))  # a symlinked config stays a symlink
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fedaccess-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
