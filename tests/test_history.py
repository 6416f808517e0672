"""The nightly results history: real SQLite files, cells read from real run directories
(results.json written by lab.results, report rendered by lab.report), no mocks."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from lab.errors import UserError
from lab.cell import parse_cell_id
from lab.history import SCHEMA_VERSION, CellRecord, History, NightStatus, VersionChange, compare, default_path
from lab.matrix import load_matrix
from lab.nightly import write_night_summary
from lab.report import render_report
from lab.results import Check, Command, RunResult, Step, load, save
from lab.verdict import Verdict

T0 = 1_714_560_000.0
STEPS = [  # (name, title, seed step, vm, seconds)
    ("artifacts", "Build or reuse kernel and initramfs; make the hibernation disk", "1-3", "", 4.0),
    ("boot-A", "Boot kernel A", "4", "A-B", 9.0),
    ("load-B", "kexec --load-preserve-context of kernel B", "5", "A-B", 2.0),
    ("jump-to-B", "kexec -e: B boots", "6", "A-B", 8.0),
    ("save-image", "B copies /proc/vmcore to the disk", "7", "A-B", 6.0),
    ("boot-C", "Boot kernel C on the same disk", "8", "C-A", 9.0),
    ("load-image", "kexec -l the saved image", "9", "C-A", 3.0),
    ("jump-back", "kexec -e: back to A", "10", "C-A", 5.0),
    ("verify-A", "A's proof file, counter, dmesg", "-", "C-A", 1.0),
]


def make_cell_run(root: Path, cell: str, verdict: str, *, observed: str | None = None, expected: str = "PASS",
                  reason: str = "", evidence: list[str] | None = None, failed_step: str = "",
                  kernel_built: bool = True, started: float = T0, render: bool = True,
                  source_version: str = "6.1.90-1", cache_key: str | None = None) -> Path:
    """A run directory as lab.runner leaves it: results.json, console logs, build log, report."""
    parts = parse_cell_id(cell)
    run_id = f"20240501-120000-{cell.replace('/', '-')}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    steps: list[Step] = []
    t = started
    console: dict[str, bytes] = {"A-B": b"", "C-A": b""}
    failed = False
    for name, title, seed, vm, secs in STEPS:
        if failed:  # after the failed step the runner skips the rest
            steps.append(Step(name, title, seed, vm, t, t, outcome="skipped"))
            continue
        fails = failed = name == failed_step
        text = f"kj-A# step {name}\r\n".encode()
        if fails and vm:
            text += b"\x1b[31m" + "\n".join(evidence or []).encode() + b"\x1b[0m\r\n"
        start = len(console.get(vm, b""))
        if vm:
            console[vm] += text
        steps.append(Step(
            name=name, title=title, seed_step=seed, vm=vm, started=t, ended=t + secs,
            outcome="failed" if fails else "ok", message=reason if fails else "",
            commands=[Command(f"run-{name}", 1 if fails else 0, "", secs)],
            console_start=start, console_end=start + len(text) if vm else 0,
        ))
        t += secs
    kernel_prov = {
        "source": f"debian:linux-source-{parts['kernel']}", "source_version": source_version,
        "release": f"{parts['kernel']}.0-kjlab", "arch": parts["arch"], "fragments": ["kexec-jump.config"],
        "patches": [] if parts["patchset"] == "stock" else ["0001-x86-kexec-32-reload-gdt.patch"],
        "compiler": "gcc (Debian 12.2.0-14) 12.2.0", "config_sha256": "ab" * 32,
        "cache_key": cache_key or hashlib.sha256(f"{parts['kernel']}/{parts['arch']}/{parts['patchset']}".encode()).hexdigest()[:16],
        "cached": True,
    }
    result = RunResult(
        run_id=run_id, scenario=f"{parts['arch']}-{parts['flow']}-{parts['patchset']}",
        scenario_path=f"scenarios/{parts['arch']}-{parts['flow']}.toml", flow=parts["flow"], started=started,
        ended=t, verdict=verdict, reason=reason, failed_step=failed_step, evidence=list(evidence or []),
        expected_verdict=expected, observed_verdict=observed or verdict,
        signature_matched=True if verdict == "XFAIL" else (False if verdict == "XPASS" else None),
        steps=steps,
        checks=[Check("proof-file", verdict in ("PASS", "XPASS"), "sha256 matches" if verdict == "PASS" else "A did not return")],
        provenance={
            "qemu": "QEMU emulator version 7.2.11", "host": "lab1 Linux 6.1.0-21-amd64 x86_64",
            "python": "3.11.2", "kjlab_commit": "5fa6990abcde", "accelerator": "tcg", "accelerator_reason": "no /dev/kvm",
            "machine": {"name": parts["machine"], "arch": parts["arch"]},
            **({"kernel": kernel_prov} if kernel_built else {}),
        },
        quirks={"wide-window": True, "kexec-syscall": True},
        artifacts={"build log": "build.log", **({"kernel config": "kernel.config"} if kernel_built else {})},
    )
    save(result, run_dir)
    (run_dir / "build.log").write_text("make -j2 bzImage\n" + ("" if kernel_built else "error: build failed\n"))
    if kernel_built:
        (run_dir / "kernel.config").write_text("CONFIG_KEXEC_JUMP=y\n")
        for vm, data in console.items():
            (run_dir / f"console-{vm}.log").write_bytes(data)
    if render:
        render_report(run_dir)
    return run_dir


def record(root: Path, cell: str, verdict: str, **kw: object) -> CellRecord:
    return CellRecord.from_run(cell, parse_cell_id(cell), make_cell_run(root, cell, verdict, **kw))


A = "6.1/i386/pc-virtio/hibernate/gdt-fix"
B = "6.1/i386/pc-virtio/hibernate/stock"
C = "6.1/i386/q35-ahci/hibernate/gdt-fix"
D = "6.12/x86_64/pc-virtio/roundtrip/stock"
E = "6.12/i386/pc-virtio/hibernate/stock"
F = "6.1/i386/pc-virtio/simple/gdt-fix"


def test_cell_record_from_run(tmp_path: Path) -> None:
    run_dir = make_cell_run(tmp_path, B, "XFAIL", observed="TRIPLE_FAULT", expected="TRIPLE_FAULT",
                            reason="CPU reset at jump back (expected failure TRIPLE_FAULT seen in jump-back)",
                            evidence=["Triple fault"], failed_step="jump-back")
    rec = CellRecord.from_run(B, {"kernel": "6.1", "arch": "i386", "machine": "pc-virtio", "flow": "hibernate",
                                  "patchset": "stock"}, run_dir)
    assert rec.cell == B and rec.kernel == "6.1" and rec.machine == "pc-virtio" and rec.patchset == "stock"
    assert (rec.verdict, rec.observed, rec.expected) == ("XFAIL", "TRIPLE_FAULT", "TRIPLE_FAULT")
    assert rec.failed_step == "jump-back" and rec.good
    assert rec.seconds == pytest.approx(sum(s[4] for s in STEPS[:8]))  # up to the failed step
    assert rec.run_dir == str(run_dir) and rec.report == str(run_dir / "report.html")
    assert Path(rec.report).is_file()


def test_cell_record_parts_from_id_and_missing_results(tmp_path: Path) -> None:
    run_dir = make_cell_run(tmp_path, A, "PASS", reason="A is back", render=False)
    rec = CellRecord.from_run(A, {}, run_dir)
    assert (rec.kernel, rec.arch, rec.machine, rec.flow, rec.patchset) == ("6.1", "i386", "pc-virtio", "hibernate", "gdt-fix")
    assert rec.report == ""  # no report.html was rendered
    empty = tmp_path / "died-before-first-save"
    empty.mkdir()
    dead = CellRecord.from_run(A, {}, empty)
    assert dead.verdict == "ERROR" and "results.json" in dead.reason and not dead.good
    with pytest.raises(ValueError):
        CellRecord.from_run("odd-name", {"kernel": "6.1"}, run_dir)


def test_schema_wal_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h" / "history.sqlite"
    with History(path) as h:
        assert h.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"nights", "cells", "schema_version"} <= tables
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"nights_by_matrix", "cells_by_cell"} <= indexes
    cols = [r[1] for r in db.execute("PRAGMA table_info(cells)")]
    assert cols == ["night_id", "cell", "kernel", "arch", "machine", "flow", "patchset", "verdict", "observed",
                    "expected", "reason", "failed_step", "seconds", "run_dir", "report", "figures",
                    "source_version", "release"]
    assert [r[1] for r in db.execute("PRAGMA table_info(nights)")] == ["id", "name", "matrix", "started", "ended",
                                                                       "summary_path", "status"]
    # a newer schema is refused, not misread
    db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(UserError, match="newer"):
        History(path)

    monkeypatch.setenv("KJLAB_HISTORY", str(tmp_path / "elsewhere.sqlite"))
    assert default_path() == tmp_path / "elsewhere.sqlite"
    monkeypatch.delenv("KJLAB_HISTORY")
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache"))
    assert default_path() == tmp_path / "cache" / "history.sqlite"
    History().close()
    assert (tmp_path / "cache" / "history.sqlite").is_file()


def test_two_nights_regression_fix_new_gone(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    n1_runs, n2_runs = tmp_path / "n1", tmp_path / "n2"
    with History(db) as h:
        n1 = h.start_night("2024-05-01", "nightly.toml", started=T0)
        h.record_cell(n1, record(n1_runs, A, "PASS", reason="A is back"))
        h.record_cell(n1, record(n1_runs, B, "XFAIL", observed="TRIPLE_FAULT", expected="TRIPLE_FAULT",
                                 reason="expected", failed_step="jump-back", evidence=["Triple fault"]))
        h.record_cell(n1, record(n1_runs, C, "PANIC", reason="Kernel panic in B", failed_step="jump-to-B",
                                 evidence=["Kernel panic - not syncing: VFS"]))
        h.record_cell(n1, record(n1_runs, D, "HANG", reason="save-image timed out", failed_step="save-image"))
        h.record_cell(n1, record(n1_runs, E, "PASS", reason="A is back"))
        h.finish_night(n1, n1_runs / "summary.html", ended=T0 + 3600)

    # another connection (the next night's process) sees the first night
    with History(db) as h:
        n2 = h.start_night("2024-05-02", "nightly.toml", started=T0 + 86400)
        assert h.previous_night("nightly.toml", n2) == n1
        assert h.previous_night("other.toml", n2) is None
        h.record_cell(n2, record(n2_runs, A, "TRIPLE_FAULT", reason="CPU reset", failed_step="jump-back",
                                 evidence=["Triple fault"]))  # regression
        h.record_cell(n2, record(n2_runs, B, "XFAIL", observed="TRIPLE_FAULT", expected="TRIPLE_FAULT",
                                 reason="expected", failed_step="jump-back"))  # unchanged good
        h.record_cell(n2, record(n2_runs, C, "PASS", reason="A is back"))  # fix
        h.record_cell(n2, record(n2_runs, D, "KEXEC_ERROR", reason="locate_hole failed",
                                 failed_step="load-B"))  # still failing (another failure)
        h.record_cell(n2, record(n2_runs, F, "PASS", reason="A is back"))  # new
        # E is gone
        prev, cur = h.cells(n1), h.cells(n2)
        cmp = compare(prev, cur)
        assert cmp.regressions == [A]
        assert cmp.fixes == [C]
        assert cmp.still_failing == [D]
        assert cmp.new_cells == [F]
        assert cmp.gone_cells == [E]
        assert cmp.unchanged_good == [B]
        assert cmp.has_regressions
        assert cmp.change(A) == "PASS -> TRIPLE_FAULT" and cmp.change(E) == "PASS -> -"
        assert cmp.lines()[0] == f"REGRESSION {A} (PASS -> TRIPLE_FAULT): CPU reset"
        assert h.compare_with_previous(n2).regressions == [A]
        h.finish_night(n2, n2_runs / "summary.html")

        # the records survive the round trip through SQLite unchanged
        assert cur[A] == CellRecord.from_run(A, {}, Path(cur[A].run_dir))
        assert cur[D].reason == "locate_hole failed" and cur[D].failed_step == "load-B"
        assert prev[B].observed == "TRIPLE_FAULT" and prev[B].expected == "TRIPLE_FAULT"

        # a re-run of a cell replaces its record
        h.record_cell(n2, record(tmp_path / "rerun", A, "PASS", reason="A is back"))
        assert h.cells(n2)[A].verdict == "PASS"
        assert not h.compare_with_previous(n2).has_regressions

        nights = h.nights("nightly.toml")
        assert [n.name for n in nights] == ["2024-05-01", "2024-05-02"]
        assert nights[0].summary_path == str(n1_runs / "summary.html") and nights[0].ended == T0 + 3600
        assert [n.name for n in h.nights("nightly.toml", last=1)] == ["2024-05-02"]

        n3 = h.start_night("2024-05-03", "nightly.toml")
        h.record_cell(n3, record(tmp_path / "n3", A, "PANIC", reason="panic"))
        h.finish_night(n3, None)
        assert h.trend("nightly.toml", A) == [("2024-05-01", "PASS"), ("2024-05-02", "PASS"), ("2024-05-03", "PANIC")]
        assert h.trend("nightly.toml", A, last=2) == [("2024-05-02", "PASS"), ("2024-05-03", "PANIC")]
        assert h.trend("nightly.toml", E) == [("2024-05-01", "PASS"), ("2024-05-02", None), ("2024-05-03", None)]
        assert h.trend("other.toml", A) == []


def test_unfinished_night_is_not_the_previous_one(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        n1 = h.start_night("mon", "m")
        h.record_cell(n1, record(tmp_path / "1", A, "PASS"))
        h.finish_night(n1, "summary.html")
        n2 = h.start_night("tue", "m")  # died half way: never finished
        n3 = h.start_night("wed", "m")
        assert h.previous_night("m", n3) == n1
        assert h.previous_night("m", n3, finished_only=False) == n2
        assert h.previous_night("m", n1) is None
        assert compare({}, h.cells(n1)).new_cells == [A]
        with pytest.raises(KeyError):
            h.record_cell(999, record(tmp_path / "x", A, "PASS"))


def test_failed_write_rolls_back(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        n = h.start_night("mon", "m")
        bad = CellRecord(cell=A, kernel="6.1", arch="i386", machine="pc-virtio", flow="hibernate",
                         patchset="gdt-fix", verdict=None)  # type: ignore[arg-type]  # NOT NULL
        with pytest.raises(sqlite3.IntegrityError):
            h.record_cell(n, bad)
        assert h.cells(n) == {}
        h.record_cell(n, record(tmp_path / "r", A, "PASS"))  # the connection is usable after the rollback
        assert list(h.cells(n)) == [A]


def test_compare_good_verdicts() -> None:
    def rec(cell: str, verdict: str) -> CellRecord:
        return CellRecord(cell=cell, **parse_cell_id(cell), verdict=verdict)

    prev = {A: rec(A, "XFAIL"), B: rec(B, "ERROR"), C: rec(C, "PASS"), D: rec(D, "XPASS")}
    cur = {A: rec(A, "XPASS"), B: rec(B, "XFAIL"), C: rec(C, "INTERRUPTED"), D: rec(D, "PASS")}
    cmp = compare(prev, cur)
    assert cmp.regressions == [A, C]  # XFAIL -> XPASS: the known bug no longer shows; PASS -> INTERRUPTED
    assert cmp.fixes == [B, D]
    assert not compare(cur, cur).has_regressions


SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE nights (id INTEGER PRIMARY KEY, name TEXT NOT NULL, matrix TEXT NOT NULL, started REAL NOT NULL,
                     ended REAL, summary_path TEXT);
CREATE TABLE cells (night_id INTEGER NOT NULL REFERENCES nights(id) ON DELETE CASCADE, cell TEXT NOT NULL,
    kernel TEXT NOT NULL, arch TEXT NOT NULL, machine TEXT NOT NULL, flow TEXT NOT NULL, patchset TEXT NOT NULL,
    verdict TEXT NOT NULL, observed TEXT NOT NULL, expected TEXT NOT NULL, reason TEXT NOT NULL,
    failed_step TEXT NOT NULL, seconds REAL NOT NULL, run_dir TEXT NOT NULL, report TEXT NOT NULL,
    PRIMARY KEY (night_id, cell));
INSERT INTO schema_version VALUES (1);
INSERT INTO nights VALUES (1, 'mon', 'm', 1000.0, 2000.0, 'mon/summary.html');
INSERT INTO nights VALUES (2, 'tue', 'm', 3000.0, NULL, NULL);
INSERT INTO cells VALUES (1, '6.1/i386/pc-virtio/hibernate/gdt-fix', '6.1', 'i386', 'pc-virtio', 'hibernate',
    'gdt-fix', 'PASS', 'PASS', 'PASS', '', '', 12.0, 'r', '');
"""


def test_a_version_1_history_opens_and_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.close()
    with History(path) as h:
        assert h.schema_version == SCHEMA_VERSION == 4
        assert h.night(1).status == NightStatus.COMPLETED  # it had ended
        assert h.night(2).status == NightStatus.RUNNING  # it never ended: died
        assert list(h.cells(1)) == [A]
        n3 = h.start_night("wed", "m")
        assert h.previous_night("m", n3) == 1
    with History(path) as h:  # opening again changes nothing
        assert h.schema_version == 4 and h.night(1).status == NightStatus.COMPLETED
        assert h.cells(1)[A].figures == {}  # a cell of before figures were kept has none
        assert (h.cells(1)[A].source_version, h.cells(1)[A].release) == ("", "")  # nor a kernel version


def test_an_interrupted_night_is_kept_but_not_compared_against(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as h:
        n1 = h.start_night("mon", "m")
        h.record_cell(n1, record(tmp_path / "1", A, "PASS"))
        h.finish_night(n1, "summary.html")
        n2 = h.start_night("tue", "m")
        h.record_cell(n2, record(tmp_path / "2", A, "PANIC"))
        h.finish_night(n2, "summary.html", status=NightStatus.INTERRUPTED)
        n3 = h.start_night("wed", "m")
        assert h.night(n1).status == NightStatus.COMPLETED and h.night(n2).status == NightStatus.INTERRUPTED
        assert h.previous_night("m", n3) == n1
        assert h.previous_night("m", n3, finished_only=False) == n2
        assert [v for _, v in h.trend("m", A)] == ["PASS", "PANIC", None]  # its cells still count in trends
        with pytest.raises(ValueError):
            h.finish_night(n3, None, status="half-done")  # type: ignore[arg-type]


RUNS = Path(__file__).resolve().parent / "data" / "runs"


def test_a_cycle_s_figures_are_kept_per_cell_and_night(tmp_path: Path) -> None:
    """A hibernation cell's figures (lab.compare.cycle_figures) are read from its run and
    kept in the history, night by night; a cell of another flow has none."""
    kexec = CellRecord.from_run("6.1/i386/pc-virtio/hibernate/0001", {}, RUNS / "i386-hibernate-pass")
    swsusp = CellRecord.from_run("6.1/i386/pc-virtio/swsusp/0001", {}, RUNS / "i386-swsusp-pass")
    other = CellRecord.from_run("6.1/i386/pc-virtio/jump-roundtrip/0001", {}, RUNS / "i386-jump-roundtrip-pass")
    assert kexec.figures["image_bytes"] == 92282880 and swsusp.figures["image_bytes"] < kexec.figures["image_bytes"]
    assert kexec.figures["cycle"] == pytest.approx(sum(kexec.figures[p] for p in ("prepare", "save", "resume")), abs=0.01)
    assert other.figures == {"jumps_to_b": 1.0}  # no cycle figures: not a hibernation cycle
    assert kexec.figures["jumps_to_b"] == 1.0 and "jumps_to_b" not in swsusp.figures
    with History(tmp_path / "h.sqlite") as h:
        for night in ("mon", "tue"):
            n = h.start_night(night, "m")
            h.record_cell(n, kexec)
            if night == "tue":
                h.record_cell(n, swsusp)
            h.finish_night(n, None)
        assert h.cells(n)[kexec.cell].figures == kexec.figures
        assert h.figures_trend("m", swsusp.cell) == [("mon", {}), ("tue", swsusp.figures)]


SCHEMA_V2_CELLS = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE nights (id INTEGER PRIMARY KEY, name TEXT NOT NULL, matrix TEXT NOT NULL, started REAL NOT NULL,
                     ended REAL, summary_path TEXT, status TEXT NOT NULL DEFAULT 'running');
CREATE TABLE cells (night_id INTEGER NOT NULL REFERENCES nights(id) ON DELETE CASCADE, cell TEXT NOT NULL,
    kernel TEXT NOT NULL, arch TEXT NOT NULL, machine TEXT NOT NULL, flow TEXT NOT NULL, patchset TEXT NOT NULL,
    verdict TEXT NOT NULL, observed TEXT NOT NULL, expected TEXT NOT NULL, reason TEXT NOT NULL,
    failed_step TEXT NOT NULL, seconds REAL NOT NULL, run_dir TEXT NOT NULL, report TEXT NOT NULL,
    PRIMARY KEY (night_id, cell));
INSERT INTO schema_version VALUES (1);
INSERT INTO schema_version VALUES (2);
INSERT INTO nights VALUES (1, 'mon', 'm', 1000.0, 2000.0, 'mon/summary.html', 'completed');
INSERT INTO cells VALUES (1, '6.1/i386/pc-virtio/hibernate/gdt-fix', '6.1', 'i386', 'pc-virtio', 'hibernate',
    'gdt-fix', 'PASS', 'PASS', 'PASS', '', '', 12.0, 'r', '');
"""


def test_a_version_2_history_gains_figures(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V2_CELLS)
    db.close()
    with History(path) as h:
        assert h.schema_version == 4
        assert h.cells(1)[A].figures == {} and h.cells(1)[A].verdict == "PASS"
        n = h.start_night("tue", "m")
        h.record_cell(n, CellRecord(**{**vars(h.cells(1)[A]), "figures": {"cycle": 14.7}}))
        assert h.figures_trend("m", A) == [("mon", {}), ("tue", {"cycle": 14.7})]


SCHEMA_V3_CELLS = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE nights (id INTEGER PRIMARY KEY, name TEXT NOT NULL, matrix TEXT NOT NULL, started REAL NOT NULL,
                     ended REAL, summary_path TEXT, status TEXT NOT NULL DEFAULT 'running');
CREATE TABLE cells (night_id INTEGER NOT NULL REFERENCES nights(id) ON DELETE CASCADE, cell TEXT NOT NULL,
    kernel TEXT NOT NULL, arch TEXT NOT NULL, machine TEXT NOT NULL, flow TEXT NOT NULL, patchset TEXT NOT NULL,
    verdict TEXT NOT NULL, observed TEXT NOT NULL, expected TEXT NOT NULL, reason TEXT NOT NULL,
    failed_step TEXT NOT NULL, seconds REAL NOT NULL, run_dir TEXT NOT NULL, report TEXT NOT NULL,
    figures TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (night_id, cell));
CREATE INDEX nights_by_matrix ON nights (matrix, id);
CREATE INDEX cells_by_cell ON cells (cell, night_id);
CREATE INDEX cells_by_verdict ON cells (night_id, verdict);
INSERT INTO schema_version VALUES (3);
INSERT INTO nights VALUES (1, 'mon', 'm', 1000.0, 2000.0, 'mon/summary.html', 'completed');
INSERT INTO cells VALUES (1, '6.1/i386/pc-virtio/hibernate/gdt-fix', '6.1', 'i386', 'pc-virtio', 'hibernate',
    'gdt-fix', 'PASS', 'PASS', 'PASS', '', '', 12.0, 'r', '', '{"cycle": 14.7}');
"""


def test_a_version_3_history_gains_kernel_versions(tmp_path: Path) -> None:
    """A version-3 file's cells have no kernel version: unknown (""), and a night of a
    known version after them is no version change."""
    path = tmp_path / "v3.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V3_CELLS)
    db.close()
    with History(path) as h:
        assert h.schema_version == 4
        old = h.cells(1)[A]
        assert (old.source_version, old.release, old.figures, old.verdict) == ("", "", {"cycle": 14.7}, "PASS")
        n = h.start_night("tue", "m")
        h.record_cell(n, CellRecord(**{**vars(old), "source_version": "6.1.192-3", "release": "6.1.192"}))
        assert h.versions_trend("m", A) == [("mon", ""), ("tue", "6.1.192-3")]
        cmp = h.compare_with_previous(n)
        assert cmp.version_changes == [] and cmp.version_change(A) is None
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(cells)")]
    assert cols[-2:] == ["source_version", "release"]


K61_HIBERNATE = "6.1/i386/pc-virtio/hibernate/fixes"
K61_SWSUSP = "6.1/i386/pc-virtio/swsusp/fixes"
K612 = "6.12/x86_64/pc-virtio/hibernate/fixes"


def recorded_run(name: str, dest: Path, *, source_version: str | None = None, fail: bool = False) -> Path:
    """A recorded run (tests/data/runs) copied to `dest`; with `source_version`, as if the
    kernel had been built from that Debian version; with `fail`, its observed failure is
    the verdict (the cell expected a PASS)."""
    run_dir = Path(shutil.copytree(RUNS / name, dest))
    if source_version or fail:
        res = load(run_dir)
        if source_version:
            res.provenance["kernel"] |= {"source_version": source_version, "release": source_version.rsplit("-", 1)[0]}
        if fail:
            assert res.observed_verdict is not None
            res.verdict, res.expected_verdict = res.observed_verdict, Verdict.PASS
        save(res, run_dir)
    return run_dir


def two_nights_of_a_new_kernel(tmp_path: Path, h: History) -> tuple[int, int]:
    """Night 1: bookworm's 6.1.192-3, everything passes. Night 2: 6.1 moved to 6.1.193-1,
    its hibernate cell triple-faults; trixie's 6.12 is the same."""
    n1 = h.start_night("night-1", "nightly-i386")
    for cell, name in ((K61_HIBERNATE, "i386-hibernate-pass"), (K61_SWSUSP, "i386-swsusp-pass"),
                       (K612, "x86_64-hibernate-pass")):
        h.record_cell(n1, CellRecord.from_run(cell, {}, recorded_run(name, tmp_path / "n1" / name)))
    h.finish_night(n1, None)
    n2 = h.start_night("night-2", "nightly-i386")
    for cell, name, version, fail in ((K61_HIBERNATE, "i386-triple-fault-resume", "6.1.193-1", True),
                                      (K61_SWSUSP, "i386-swsusp-pass", "6.1.193-1", False),
                                      (K612, "x86_64-hibernate-pass", None, False)):
        run_dir = recorded_run(name, tmp_path / "n2" / name, source_version=version, fail=fail)
        h.record_cell(n2, CellRecord.from_run(cell, {}, run_dir))
    return n1, n2


def test_the_kernel_version_of_every_cell_and_night(tmp_path: Path) -> None:
    rec = CellRecord.from_run(K61_HIBERNATE, {}, RUNS / "i386-hibernate-pass")
    assert (rec.source_version, rec.release) == ("6.1.192-3", "6.1.192")
    rec = CellRecord.from_run(K612, {}, RUNS / "x86_64-hibernate-pass")
    assert (rec.source_version, rec.release) == ("6.12.117-1", "6.12.117")
    unbuilt = CellRecord.from_run(A, {}, make_cell_run(tmp_path / "x", A, "ERROR", kernel_built=False, render=False))
    assert (unbuilt.source_version, unbuilt.release) == ("", "")  # the build failed: no kernel

    with History(tmp_path / "h.sqlite") as h:
        n1, n2 = two_nights_of_a_new_kernel(tmp_path, h)
        assert h.cells(n2)[K61_HIBERNATE].verdict == "TRIPLE_FAULT"
        assert {c: r.source_version for c, r in h.cells(n2).items()} == {
            K61_HIBERNATE: "6.1.193-1", K61_SWSUSP: "6.1.193-1", K612: "6.12.117-1"}
        assert h.cells(n2)[K61_SWSUSP].release == "6.1.193"
        cmp = h.compare_with_previous(n2)
        assert cmp.regressions == [K61_HIBERNATE] and cmp.unchanged_good == [K61_SWSUSP, K612]
        assert cmp.version_changes == [VersionChange("6.1", "6.1.192-3", "6.1.193-1")]  # not 6.12
        assert cmp.version_change(K61_SWSUSP) == VersionChange("6.1", "6.1.192-3", "6.1.193-1")
        assert cmp.version_change(K612) is None
        lines = cmp.lines()
        assert lines[0] == "kernel 6.1: 6.1.192-3 -> 6.1.193-1"
        assert lines[1].startswith(f"REGRESSION {K61_HIBERNATE} (PASS -> TRIPLE_FAULT) "
                                   "[kernel 6.1: 6.1.192-3 -> 6.1.193-1]: ")
        assert len(lines) == 2
        assert h.versions_trend("nightly-i386", K61_HIBERNATE) == [("night-1", "6.1.192-3"), ("night-2", "6.1.193-1")]
        assert h.versions_trend("nightly-i386", K612, last=1) == [("night-2", "6.12.117-1")]
        # a night's cells of one kernel built from two versions (e.g. resumed after an update)
        mixed = dict(h.cells(n2))
        mixed[K61_SWSUSP] = CellRecord(**{**vars(mixed[K61_SWSUSP]), "source_version": "6.1.192-3"})
        assert compare(h.cells(n1), mixed).version_changes == [
            VersionChange("6.1", "6.1.192-3", "6.1.192-3, 6.1.193-1")]


def test_the_summary_shows_the_version_changes_and_each_night_s_version(tmp_path: Path) -> None:
    matrix = load_matrix(Path(__file__).resolve().parent.parent / "scenarios" / "matrices" / "nightly-i386.matrix.toml")
    with History(tmp_path / "h.sqlite") as h:
        _, n2 = two_nights_of_a_new_kernel(tmp_path, h)
        records = h.cells(n2)
        cmp = h.compare_with_previous(n2)
        page = write_night_summary(tmp_path, matrix, records, cmp, h, 600.0, 2).read_text()
    assert "1 kernel of another version" in page
    assert "kernel 6.1: 6.1.192-3 -&gt; 6.1.193-1\n" in page  # the list of changes, first
    assert f"REGRESSION {K61_HIBERNATE} (PASS -&gt; TRIPLE_FAULT) [kernel 6.1: 6.1.192-3 -&gt; 6.1.193-1]" in page
    assert '<div class="vchange">kernel 6.1: 6.1.192-3 -&gt; 6.1.193-1</div>' in page  # under the cells of 6.1
    assert page.count('class="vchange"') == 2
    assert '<div class="small">6.1.193-1</div>' in page and '<div class="small">6.12.117-1</div>' in page  # rows
    # each night's version in the trend; the night 6.1 changed is marked
    assert 'title="night-1: PASS, kernel 6.1.192-3"' in page
    assert 'class="c-fail vchg" title="night-2: TRIPLE_FAULT, kernel 6.1.193-1"' in page
    assert 'class="c-pass" title="night-2: PASS, kernel 6.12.117-1"' in page
