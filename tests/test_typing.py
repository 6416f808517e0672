"""The library type-checks: mypy --strict on lab/ finds nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_passes_on_lab(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # the cache in tmp_path: nothing written into the checkout
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "mypy-cache"), "lab"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mypy --strict lab (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
