"""A real nightly: 21 cells (three kernels, six machines, and swsusp beside kexec jump on
pc-virtio) run twice in one command each, then once more with one cell made to fail. Long: `pytest -m nightly`."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.history import History

pytestmark = pytest.mark.nightly
MATRIX = SCENARIOS_DIR / "matrices" / "nightly-i386.matrix.toml"


def nightly(matrix: Path, runs: Path, history: Path) -> tuple[int, str, Path]:
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "nightly", str(matrix), "--runs-dir", str(runs),
                           "--history", str(history)], capture_output=True, text=True, timeout=3 * 3600)
    sys.stdout.write(proc.stdout[-6000:])
    night = sorted(p for p in runs.iterdir() if p.is_dir())[-1]
    return proc.returncode, proc.stdout, night


def test_two_nights_then_a_regression(tmp_path):
    history = tmp_path / "history.sqlite"
    code1, out1, night1 = nightly(MATRIX, tmp_path / "runs", history)
    assert code1 == 0, out1[-3000:]
    code2, out2, night2 = nightly(MATRIX, tmp_path / "runs", history)
    assert code2 == 0 and "REGRESSION" not in out2, out2[-3000:]
    with History(history) as h:
        nights = h.nights("nightly-i386")
        assert len(nights) == 2
        cells = h.cells(nights[-1].id)
    assert len(cells) == 21
    assert all(c.verdict == "PASS" for c in cells.values()), {k: (c.verdict, c.reason) for k, c in cells.items() if c.verdict != "PASS"}
    summary = (night2 / "summary.html").read_text()
    assert summary.count('class="cell"') == 21
    # kexec jump against swsusp, per kernel, this night and the one before
    assert "kexec jump against swsusp" in summary
    for kernel in ("6.1", "6.12", "7.2"):
        assert f"{kernel} i386 pc-virtio fixes" in summary
        assert cells[f"{kernel}/i386/pc-virtio/swsusp/fixes"].figures["cycle"] > 0
    junit = ET.parse(night2 / "junit.xml").getroot()
    assert sum(int(s.get("tests")) for s in junit.iter("testsuite")) == 21
    import kcidb_io

    kcidb_io.schema.LATEST.validate(json.loads((night2 / "kcidb.json").read_text()))

    # The same matrix (same name) with one cell made to fail: no crash note, no /proc/vmcore.
    broken = tmp_path / "broken.matrix.toml"
    broken.write_text(MATRIX.read_text() + '\n[[override]]\ncells = "6.1/i386/pc-ide/*"\nquirks = { crash-note = false }\n')
    code3, out3, night3 = nightly(broken, tmp_path / "runs", history)
    assert code3 == 1
    assert "REGRESSION 6.1/i386/pc-ide/hibernate/fixes (PASS -> KEXEC_ERROR)" in out3
    # Any other regression here is a real one of that night (the SMP cell has shown an
    # intermittent triple fault, see the notes), not the injected one: print it.
    others = [line for line in out3.splitlines() if "REGRESSION " in line and "pc-ide" not in line]
    if others:
        print("other regressions this night:", *others, sep="\n  ")
    assert "regression" in (night3 / "summary.html").read_text()
