"""The pages as a person sees them: a run's report and a nightly summary opened in
headless Chromium (Debian's package). They render, their links resolve, and a
screenshot of each is kept with the test output (tests/output/, or $KJLAB_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from lab.compare import compare_runs
from lab.exports import write_exports
from lab.history import CellRecord, History, compare
from lab.matrix import load_matrix
from lab.nightly import write_night_summary
from lab.report import render_report
from tests.test_report import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bootstrap.sh installs it)")
SHOTS = Path(os.environ.get("KJLAB_SCREENSHOTS", Path(__file__).parent / "output"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k == "href" and v:
                self.hrefs.append(v)


def open_page(page: Path, shot_name: str) -> str:
    """The DOM Chromium built (after parsing and layout), and a screenshot kept on disk."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / shot_name
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", "--window-size=1300,2000", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, "Chromium made no screenshot"
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def assert_links_resolve(page: Path, dom: str) -> int:
    parser = Links()
    parser.feed(dom)
    local = [h for h in parser.hrefs if not urlparse(h).scheme and not h.startswith("#")]
    for href in local:
        target = (page.parent / unquote(urlparse(href).path)).resolve()
        assert target.exists(), f"{page.name}: link {href} points at nothing"
    return len(local)


def test_run_report_renders_in_chromium(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir)
    page = render_report(run_dir)
    dom = open_page(page, "report.png")
    assert "TRIPLE_FAULT" in dom  # make_run's verdict
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # guest output stays text
    assert assert_links_resolve(page, dom) >= 3


def test_nightly_summary_renders_in_chromium(tmp_path):
    matrix = load_matrix(Path(__file__).parent.parent / "scenarios" / "matrices" / "nightly-i386.matrix.toml")
    history = History(tmp_path / "history.sqlite")
    records = {}
    for i, cell in enumerate(matrix.cells):
        run_dir = tmp_path / "runs" / cell.slug
        make_run(run_dir)
        render_report(run_dir)
        rec = CellRecord.from_run(cell.id, cell.parts, run_dir)
        if i == 0:  # one cell turned red
            rec.verdict = "PANIC"
        records[cell.id] = rec
    first = history.start_night("night-1", matrix.name)
    for rec in records.values():
        history.record_cell(first, CellRecord(**{**vars(rec), "verdict": "PASS"}))
    history.finish_night(first, None)
    second = history.start_night("night-2", matrix.name)
    for rec in records.values():
        history.record_cell(second, rec)
    cmp = compare(history.cells(first), records)
    page = write_night_summary(tmp_path, matrix, records, cmp, history, 600.0, 2)
    write_exports(tmp_path, matrix.name, list(records.values()))  # the page links them
    dom = open_page(page, "nightly-summary.png")
    assert "REGRESSION" in dom and matrix.cells[0].id in dom
    assert dom.count('class="cell"') == len(matrix.cells)
    assert assert_links_resolve(page, dom) >= len(matrix.cells)


RUNS = Path(__file__).resolve().parent / "data" / "runs"


def test_comparison_page_renders_in_chromium(tmp_path):
    """kjlab compare's page on two real recorded runs (6.1 i386 pc-virtio, TCG): both flows'
    phases side by side with the ratio, and the links to both runs' reports."""
    for name in ("i386-hibernate-pass", "i386-swsusp-pass"):
        shutil.copytree(RUNS / name, tmp_path / name)
        render_report(tmp_path / name)
    cmp, page = compare_runs(tmp_path / "i386-hibernate-pass", tmp_path / "i386-swsusp-pass")
    dom = open_page(page, "comparison.png")
    whole = next(r for r in cmp.rows if r.label == "whole cycle")
    assert "whole cycle" in dom and whole.ratio in dom and whole.kexec in dom
    assert "time to save" in dom and "image size" in dom
    assert assert_links_resolve(page, dom) >= 2


def test_nightly_summary_shows_the_swsusp_ratio_in_chromium(tmp_path):
    """A night of the nightly matrix (hibernate on six machines, swsusp on pc-virtio) whose
    6.1 pc-virtio pair carries the figures of two real recorded runs: the summary's table
    gives their cycle ratio, with the earlier night's."""
    matrix = load_matrix(Path(__file__).parent.parent / "scenarios" / "matrices" / "nightly-i386.matrix.toml")
    assert any(c.flow == "swsusp" for c in matrix.cells)
    history = History(tmp_path / "history.sqlite")
    real = {"hibernate": RUNS / "i386-hibernate-pass", "swsusp": RUNS / "i386-swsusp-pass"}
    records = {}
    for cell in matrix.cells:
        run_dir = tmp_path / "runs" / cell.slug
        if cell.kernel == "6.1" and cell.machine == "pc-virtio":
            shutil.copytree(real[cell.flow], run_dir)
        else:
            make_run(run_dir)
        render_report(run_dir)
        records[cell.id] = CellRecord.from_run(cell.id, cell.parts, run_dir)
    for night in ("night-1", "night-2"):
        n = history.start_night(night, matrix.name)
        for rec in records.values():
            history.record_cell(n, rec)
        history.finish_night(n, None)
    page = write_night_summary(tmp_path, matrix, records, compare(history.cells(n - 1), records), history, 600.0, 2)
    write_exports(tmp_path, matrix.name, list(records.values()))
    dom = open_page(page, "nightly-ratio.png")
    assert "kexec jump against swsusp" in dom and "6.1 i386 pc-virtio fixes" in dom
    k = records["6.1/i386/pc-virtio/hibernate/fixes"].figures["cycle"]
    s = records["6.1/i386/pc-virtio/swsusp/fixes"].figures["cycle"]
    assert f"{k / s:.2f}" in dom
    assert dom.count('class="cell"') == len(matrix.cells)
