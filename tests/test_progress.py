"""Progress with an estimate of the end (lab.progress), its terminal bars (lab.cli), and the
kernel build's ccache accounting (lab.artifacts.ccache) on the real ccache."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from lab import cli, progress
from lab.artifacts import ccache
from lab.history import CellRecord, History
from lab.progress import Progress, Tracker, duration


def test_the_estimate_of_the_end() -> None:
    p = Progress("kernel build 6.1.192 i386", 500, 2000, "objects", elapsed=60.0)
    assert p.eta == pytest.approx(180.0)
    assert p.line() == "kernel build 6.1.192 i386: 500/2000 objects (25 %), about 3m00s to go"
    first = Progress("matrix nightly", 0, 18, "cells", elapsed=10.0, expected_seconds=400.0)
    assert first.eta == pytest.approx(390.0)  # before the first cell: as the history knows it
    assert Progress("x", 0, 18, "cells", elapsed=10.0).eta is None
    unknown = Progress("kernel build 7.2 i386", 250, None, "objects", elapsed=30.0)
    assert unknown.eta is None and unknown.line() == "kernel build 7.2 i386: 250 objects so far (no estimate of the end yet)"
    assert Progress("b", 1834, 1800, "objects", 200.0, finished=True).line() == "b: done, 1834 objects in 3m20s"
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_without_a_sink_progress_is_a_log_line_at_each_tenth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lab.progress")
    t = Tracker("kernel build", 100, "objects")
    for _ in range(100):
        t.advance()
    t.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 11 and lines[0].startswith("kernel build: 10/100 objects (10 %)")
    assert lines[-1].startswith("kernel build: done, 100 objects in ")


def test_a_sink_gets_every_report_instead_of_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lab.progress")
    seen: list[Progress] = []
    with progress.showing(seen.append):
        t = Tracker("matrix m", 3, "cells")
        t.advance()
        t.advance()
        t.finish()
    assert [(p.done, p.finished) for p in seen] == [(1, False), (2, False), (2, True)]
    assert not caplog.records
    Tracker("after", 1, "cells").advance()  # the sink is gone: the log again
    assert caplog.records


def test_the_terminal_bars_draw_and_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, force_terminal=True, width=120, highlight=False))
    bars = cli._Bars()
    with progress.showing(bars):
        t = Tracker("kernel build 6.1.192 i386", 2000, "objects")
        t.started -= 60  # a minute in
        t.advance(500)
        assert bars.bars is not None
        bars.bars.refresh()
        t.finish()
    drawn = screen.getvalue()
    assert "kernel build 6.1.192 i386" in drawn and "500/2000" in drawn and "ETA 3m" in drawn
    assert "kernel build 6.1.192 i386: done, 500 objects in 1m00s" in drawn
    assert bars.bars is None and not bars.tasks


def test_history_knows_how_long_cells_take(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        for i, seconds in enumerate((20.0, 30.0, 100.0)):
            night = h.start_night(f"n{i}", "m")
            h.record_cell(night, CellRecord(cell="6.1/i386/pc/hibernate/fixes", kernel="6.1", arch="i386", machine="pc",
                                            flow="hibernate", patchset="fixes", verdict="PASS", observed="PASS",
                                            expected="PASS", reason="", failed_step="", seconds=seconds, run_dir="",
                                            report=""))
            h.finish_night(night, None)
        assert h.typical_seconds(["6.1/i386/pc/hibernate/fixes", "never/run"]) == {"6.1/i386/pc/hibernate/fixes": 30.0}


def test_ccache_hits_are_counted_from_its_stats_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "a.c").write_text("int a(void) { return 1; }\n")
    (tmp_path / "b.c").write_text("int b(void) { return 2; }\n")
    log = tmp_path / "stats.log"
    make_vars, env = ccache.make_args(log, tmp_path / "ccache")
    assert make_vars == ["CC=ccache gcc"] and env["CCACHE_BASEDIR"] == str(tmp_path / "cache")

    def compile_all() -> None:
        for name in ("a", "b"):
            subprocess.run(["ccache", "gcc", "-c", f"{name}.c", "-o", f"{name}.o"], cwd=tmp_path, env=env, check=True)

    compile_all()
    assert ccache.stats(log) == ccache.Stats(hits=0, misses=2)
    log.unlink()
    compile_all()
    (tmp_path / "b.c").write_text("int b(void) { return 3; }\n")  # a one-line change
    compile_all()
    got = ccache.stats(log)
    assert got == ccache.Stats(hits=3, misses=1)
    assert got.summary() == "ccache: 3/4 hits (75.0 %)"
    assert ccache.stats(tmp_path / "none.log").summary() == "ccache: no compilations"


def test_ccache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJLAB_CCACHE", "0")
    assert not ccache.available()
    monkeypatch.setenv("KJLAB_CCACHE", "1")
    assert ccache.available() == (shutil.which("ccache") is not None)
    assert os.environ["KJLAB_CCACHE"] == "1"


def test_output_to_a_pipe_is_plain_and_never_wrapped() -> None:
    """CI and cron read kjlab through a pipe: one record per line, no colour codes."""
    import sys

    proc = subprocess.run([sys.executable, "-m", "lab.cli", "list"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, COLUMNS="80"), cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert "\x1b[" not in proc.stdout
    assert max(map(len, lines)) > 100  # the long lines stay whole
    machines = [line for line in lines if line.startswith("  q35-ahci-smp2 ")]
    assert len(machines) == 1 and "fragments:" in machines[0]


def test_the_cli_prints_outside_text_as_text_not_markup(capsys) -> None:
    """A kernel build's error names make's targets in brackets ("[.../Makefile.modpost:145:
    vmlinux.symvers]"): printed as rich markup it raised MarkupError inside the run, whose
    verdict became "unexpected error in the lab" instead of the build's own failure."""
    from lab import cli
    from lab.results import Step

    text = "make[3]: *** [/root/src/scripts/Makefile.modpost:145: vmlinux.symvers] Error 1 [/]"
    step = Step(name="artifacts", title=f"build [bold]{text}", seed_step="1-3", vm="", started=0.0,
                ended=1.0, outcome="failed", message=text)
    cli._print_step(step)
    step.outcome = "running"
    cli._print_step(step)
    out = capsys.readouterr().out
    assert out.count("[/root/src/scripts/Makefile.modpost:145: vmlinux.symvers] Error 1 [/]") == 2, out
    assert "build [bold]make[3]" in out
