"""The package is typed (py.typed): mypy --strict finds nothing, on each
platform it has code for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "a365"


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_mypy_strict_finds_nothing(platform: str) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (clients/python/tests/requirements.txt)")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--platform", platform, "--cache-dir", "/dev/null", str(SOURCE)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (SOURCE / "py.typed").is_file()
