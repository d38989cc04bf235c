"""lxml (the reader) and xmlsec (the verifier) must parse with one and the same libxml2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-libxml2"


def test_lxml_and_xmlsec_share_one_libxml2() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
