"""The whole bug library and every flow scenario, each to its expected verdict (long:
`pytest -m buglib`). One suite run per directory, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR

pytestmark = pytest.mark.buglib


def run_suite(directory: Path, runs_dir: Path) -> tuple[int, list[dict], Path]:
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(directory), "--runs-dir", str(runs_dir),
                           "--keep", "failed"],
                          capture_output=True, text=True, timeout=3 * 3600)
    sys.stdout.write(proc.stdout[-8000:])
    (suite_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return proc.returncode, json.loads((suite_dir / "summary.json").read_text()), suite_dir


@pytest.mark.parametrize("directory", ["bugs", "flows", "hardware", "a-not-b", "kexec-tools-fix"])
def test_every_scenario_reaches_its_expected_verdict(tmp_path, directory):
    code, entries, suite_dir = run_suite(SCENARIOS_DIR / directory, tmp_path)
    expected = sorted(p.stem for p in (SCENARIOS_DIR / directory).glob("*.toml"))
    assert len(entries) == len(expected)
    wrong = [(e["scenario"], e["verdict"], e["reason"]) for e in entries if e["verdict"] not in ("PASS", "XFAIL")]
    assert not wrong, wrong
    for e in entries:
        assert e["verdict"] == ("PASS" if e["expected"] == "PASS" else "XFAIL")
        assert (suite_dir / e["report"]).is_file()
    summary = (suite_dir / "summary.html").read_text()
    assert all(e["report"] in summary for e in entries)
    assert code == 0
