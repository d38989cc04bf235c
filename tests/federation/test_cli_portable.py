"""The fedaccess client runs on its own: Python 3.9 or newer, standard library only, packed by
``make cli`` into one zipapp (issue 20). Only python3.11 is installed here, so 3.9 is checked by
parsing with 3.9's grammar and refusing the 3.10+ library names the client might reach for."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from federation.issuance.tokens import create_api_token
from tests.aws import MotoServer
from tests.issuance import World

ROOT = Path(__file__).resolve().parents[2]
CLIENT = (
    ROOT / "federation" / "__init__.py",
    ROOT / "federation" / "cli.py",
    ROOT / "federation" / "cli_portal.py",
    ROOT / "federation" / "cli_aws_config.py",
)


def newer_than_3_9(source: str) -> list[str]:
    """What in ``source`` a 3.9 interpreter would refuse or not have."""
    tree = ast.parse(source, feature_version=(3, 9))  # SyntaxError for match, except*, ...
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "datetime":
            found += [f"datetime.{a.name}" for a in node.names if a.name == "UTC"]
        elif isinstance(node, ast.Attribute) and node.attr == "UTC":
            if isinstance(node.value, ast.Name) and node.value.id == "datetime":
                found.append("datetime.UTC")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            words = {k.arg for k in node.keywords}
            if name == "zip" and "strict" in words:
                found.append("zip(strict=)")
            if name == "dataclass" and words & {"slots", "kw_only"}:
                found.append("dataclass(slots=/kw_only=)")
            if name in ("isinstance", "issubclass") and any(
                isinstance(arg, ast.BinOp) for arg in node.args[1:]
            ):
                found.append("isinstance(x, A | B)")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            for module in modules:
                top = (module or "").split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("__future__", "federation"):
                    found.append(f"import {module}")
    return found


@pytest.mark.parametrize("path", CLIENT, ids=lambda p: p.name)
def test_the_client_is_python_3_9_and_standard_library_only(path: Path) -> None:
    assert newer_than_3_9(path.read_text(encoding="utf-8")) == []


def test_the_check_would_catch_what_3_9_lacks() -> None:
    assert newer_than_3_9("from datetime import UTC\nimport requests\n") == [
        "datetime.UTC",
        "import requests",
    ]
    assert newer_than_3_9("isinstance(1, int | str)\nzip(a, b, strict=True)\n") == [
        "isinstance(x, A | B)",
        "zip(strict=)",
    ]
    with pytest.raises(SyntaxError):
        newer_than_3_9("match x:\n    case 1:\n        pass\n")


@pytest.mark.django_db
def test_the_zipapp_from_make_runs_alone_against_the_portal(
    world: World, broker: MotoServer, live_server: LiveServer, tmp_path: Path
) -> None:
    pyz = tmp_path / "fedaccess.pyz"
    subprocess.run(
        ["make", "--no-print-directory", "cli", f"CLI_PYZ={pyz}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    token = create_api_token(
        world.alice, name="pyz", lifetime=timedelta(days=1), now=timezone.now(), ip=None
    ).plaintext
    # -I -S: no site-packages, no PYTHONPATH, no current directory; only the zipapp and stdlib.
    result = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", str(pyz), "status"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "FEDACCESS_CONFIG_DIR": str(tmp_path / "config"),
            "FEDACCESS_URL": live_server.url,
            "FEDACCESS_TOKEN": token,
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pb-dev" in result.stdout and "cloud-eng" in result.stdout
