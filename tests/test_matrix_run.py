"""Matrices and nights without QEMU: real kernel builds of fake kernel trees (one builds,
one fails), real cell processes (tests/fake_cell.py, a stand-in for `kjlab run`), real
signals, a real SQLite history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.history import History, NightStatus
from lab.lifetime import group_members
from lab.matrix import Cell, load_matrix
from lab.matrix_run import prebuild
from lab.nightly import run_night
from lab.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
FAKE_CELL = Path(__file__).with_name("fake_cell.py")

MAKEFILE = """\
VERSION = 6
PATCHLEVEL = 9
SUBLEVEL = 0
O ?= .
tinyconfig:
\tmkdir -p $(O) && : > $(O)/.config
olddefconfig:
\t@true
bzImage:
{bzimage}
kernelrelease:
\t@echo 6.9.0-fake
"""
GOOD = "\tmkdir -p $(O)/arch/x86/boot && echo kernel > $(O)/arch/x86/boot/bzImage && echo 'c1000000 T _text' > $(O)/System.map"
BAD = "\t@echo '  CC      kernel/kexec_core.o'; echo 'kernel/kexec_core.c:1031:9: error: implicit declaration of function machine_kexec_jump'; exit 1"
MERGE = """\
#!/bin/sh
# fake merge_config.sh -m -O DIR BASE FRAGMENT...: append the fragments
while [ "$1" = -m ] || [ "$1" = -O ]; do [ "$1" = -O ] && shift; shift; done
base=$1; shift
cat "$@" >> "$base"
"""


def fake_kernel_tree(root: Path, builds: bool) -> Path:
    """A tree with the shape build_kernel expects, whose make does the least (tuxmake's idea)."""
    (root / "arch" / "x86").mkdir(parents=True)
    (root / "scripts" / "kconfig").mkdir(parents=True)
    (root / "Makefile").write_text(MAKEFILE.format(bzimage=GOOD if builds else BAD))
    merge = root / "scripts" / "kconfig" / "merge_config.sh"
    merge.write_text(MERGE)
    merge.chmod(0o755)
    return root


def write_matrix(tmp_path: Path, kernels: dict[str, str], machines: list[str], cell_timeout: float = 60,
                 patchsets: tuple[str, ...] = ("none",)) -> Path:
    text = textwrap.dedent(f"""\
        [matrix]
        name = "fake"
        machines = {json.dumps(machines)}
        parallel = 2
        cell_timeout = {cell_timeout}
        """)
    for name, source in kernels.items():
        text += f'[[kernel]]\nname = "{name}"\nsource = "{source}"\n'
    for p in patchsets:
        text += f'[[patchset]]\nname = "{p}"\npatches = []\n'
    path = tmp_path / "fake.matrix.toml"
    path.write_text(text)
    return path


def fake_cells(modes: dict[str, str], markers: Path) -> Callable[[Cell, Path, Path, str], list[str]]:
    def argv(cell: Cell, scenario_file: Path, cell_runs: Path, keep: str) -> list[str]:
        return [sys.executable, str(FAKE_CELL), modes[cell.id], str(scenario_file), str(cell_runs), str(markers)]

    return argv


def no_build(files: dict[str, Path], log_path: Path) -> dict[str, str]:
    return {}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(predicate: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache"))


def test_a_kernel_that_fails_to_build_errors_only_its_cells(tmp_path: Path) -> None:
    good = fake_kernel_tree(tmp_path / "good", builds=True)
    bad = fake_kernel_tree(tmp_path / "bad", builds=False)
    matrix = load_matrix(write_matrix(tmp_path, {"good": f"tree:{good}", "bad": f"tree:{bad}"},
                                      ["pc-virtio", "pc-ide"]))
    history = tmp_path / "history.sqlite"
    seen_in_history: list[str] = []

    def on_done(rec) -> None:  # type: ignore[no-untyped-def]
        with History(history) as h:  # another connection: the cell is already committed
            night = h.nights("fake")[-1]
            seen_in_history.append(h.cells(night.id)[rec.cell].verdict)

    modes = {c.id: "pass" for c in matrix.cells}
    night = run_night(matrix, tmp_path / "runs", record=True, history_path=history, on_done=on_done,
                      build=lambda files, log: prebuild(files, log, base=False),
                      cell_argv=fake_cells(modes, tmp_path))
    recs = night.records
    assert set(recs) == {c.id for c in matrix.cells}
    for cid, rec in recs.items():
        if cid.startswith("bad/"):
            assert rec.verdict == Verdict.ERROR and not rec.run_dir
            assert "kernel did not build" in rec.reason
            assert "error: implicit declaration of function machine_kexec_jump" in rec.reason
        else:
            assert rec.verdict == Verdict.PASS and rec.run_dir, rec
    assert not (night.night_dir / "runs" / "bad_i386_pc-virtio_hibernate_none").exists()  # never started
    assert sorted(seen_in_history) == sorted(r.verdict for r in recs.values())
    with History(history) as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.COMPLETED and n.ended and n.summary_path
        assert {c: r.verdict for c, r in h.cells(n.id).items()} == {c: r.verdict for c, r in recs.items()}
    assert "ERROR" in (night.night_dir / "summary.html").read_text()


def test_cells_leave_nothing_behind_and_timeouts_are_errors(tmp_path: Path) -> None:
    matrix = load_matrix(write_matrix(tmp_path, {"k": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide"],
                                      cell_timeout=3))
    modes = {"k/i386/pc-virtio/hibernate/none": "leftover", "k/i386/pc-ide/hibernate/none": "stubborn"}
    night = run_night(matrix, tmp_path / "runs", record=False, build=no_build, cell_argv=fake_cells(modes, tmp_path),
                      grace=1.0)
    left = night.records["k/i386/pc-virtio/hibernate/none"]
    assert left.verdict == Verdict.PASS
    assert not alive(int((Path(left.run_dir) / "leftover.pid").read_text()))  # killed with its group
    hung = night.records["k/i386/pc-ide/hibernate/none"]
    assert hung.verdict == Verdict.ERROR and hung.reason.startswith("cell timeout"), hung
    cell_pid = int((tmp_path / "k_i386_pc-ide_hibernate_none.started").read_text())
    assert not group_members(cell_pid)  # SIGTERM ignored: SIGKILL after the grace
    assert not alive(int((tmp_path / "k_i386_pc-ide_hibernate_none.qemu").read_text()))


def test_sigterm_ends_running_cells_and_keeps_what_finished(tmp_path: Path) -> None:
    """In-process: the matrix loop turns SIGTERM into a stop (it restores the handlers after)."""
    matrix = load_matrix(write_matrix(tmp_path, {"k": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide", "pc-scsi"],
                                      patchsets=("a", "b")))
    ids = [c.id for c in matrix.cells]  # pc-virtio/a, pc-virtio/b, pc-ide/a, ...
    modes = dict.fromkeys(ids, "pass")
    modes[ids[1]], modes[ids[2]] = "hang", "stubborn"  # after ids[0] passes, these two run; the rest wait
    history = tmp_path / "history.sqlite"
    slugs = [Cell(i, *i.split("/"), scenario={}).slug for i in (ids[1], ids[2])]

    def stop_when_both_run() -> None:
        if wait_for(lambda: all((tmp_path / f"{s}.started").exists() for s in slugs)):
            os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_when_both_run)
    stopper.start()
    night = run_night(matrix, tmp_path / "runs", record=True, history_path=history, build=no_build,
                      cell_argv=fake_cells(modes, tmp_path), grace=2.0)
    stopper.join()
    assert night.interrupted and night.status == NightStatus.INTERRUPTED
    assert set(night.records) == {ids[0], ids[1], ids[2]}  # the cells not started are not recorded
    assert night.records[ids[0]].verdict == Verdict.PASS
    for cid in ids[1:3]:
        rec = night.records[cid]
        assert rec.verdict == Verdict.INTERRUPTED and "the matrix was stopped" in rec.reason
    assert "interrupted (signal 15)" in night.records[ids[1]].reason  # the cell's own partial record
    for slug in slugs:
        assert not group_members(int((tmp_path / f"{slug}.started").read_text()))
        assert not alive(int((tmp_path / f"{slug}.qemu").read_text()))
    with History(history) as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.INTERRUPTED and n.ended
        assert set(h.cells(n.id)) == set(night.records)
    summary = (night.night_dir / "summary.html").read_text()
    assert "night interrupted: 3 of 6 cells recorded" in summary
    junit = ET.parse(night.night_dir / "junit.xml").getroot()
    assert sum(int(s.get("tests") or 0) for s in junit.iter("testsuite")) == 3
    kcidb = json.loads((night.night_dir / "kcidb.json").read_text())
    assert sorted(t["status"] for t in kcidb["tests"]) == ["MISS", "MISS", "PASS"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import lab.matrix_run as mr
from lab.cli import main
from test_matrix_run import fake_cells, no_build
modes = {modes!r}
mr.prebuild = lambda files, log, **kw: no_build(files, log)
mr.kjlab_run_argv = fake_cells(modes, Path({markers!r}))
sys.exit(main(["nightly", {matrix!r}, "--runs-dir", {runs!r}, "--history", {history!r}]))
"""


def start_cli(tmp_path: Path) -> tuple[subprocess.Popen, list[Path]]:
    matrix_path = write_matrix(tmp_path, {"k": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide", "pc-scsi"])
    ids = [c.id for c in load_matrix(matrix_path).cells]
    modes = {ids[0]: "pass", ids[1]: "hang", ids[2]: "hang"}
    script = DRIVER.format(root=str(ROOT), tests=str(Path(__file__).parent), modes=modes, markers=str(tmp_path),
                           matrix=str(matrix_path), runs=str(tmp_path / "runs"), history=str(tmp_path / "h.sqlite"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = [tmp_path / f"{Cell(i, *i.split('/'), scenario={}).slug}.started" for i in ids[1:]]
    if not wait_for(lambda: all(p.exists() for p in started), 60):
        proc.kill()
        pytest.fail("the cells did not start: " + proc.communicate()[0][-3000:])
    return proc, started


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_exits_130_after_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc, started = start_cli(tmp_path)
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted" in out and "INTERRUPTED" in out
    for marker in started:
        assert not group_members(int(marker.read_text()))
    (night,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert (night / "summary.html").is_file() and (night / "junit.xml").is_file()
    with History(tmp_path / "h.sqlite") as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.INTERRUPTED
        verdicts = sorted(r.verdict for r in h.cells(n.id).values())
    assert verdicts == ["INTERRUPTED", "INTERRUPTED", "PASS"]


def test_cells_die_with_a_killed_matrix(tmp_path: Path) -> None:
    """SIGKILL leaves no `finally`: the cells (and their QEMUs) end through PR_SET_PDEATHSIG."""
    proc, started = start_cli(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    for marker in started:
        cell = int(marker.read_text())
        qemu = int(marker.with_suffix(".qemu").read_text())
        assert wait_for(lambda: not alive(cell) and not alive(qemu), 10), (cell, qemu)
    with History(tmp_path / "h.sqlite") as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.RUNNING and n.ended is None  # never ended: not compared against
        assert [r.verdict for r in h.cells(n.id).values()] == ["PASS"]  # written as it finished


def test_die_with_parent(tmp_path: Path) -> None:
    """A child started with die_with_parent is SIGKILLed when its parent is."""
    script = ("import subprocess, sys, time; sys.path.insert(0, sys.argv[1]); "
              "from lab.lifetime import die_with_parent; "
              "c = subprocess.Popen(['sleep', '300'], preexec_fn=die_with_parent); "
              "print(c.pid, flush=True); time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(ROOT)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not alive(child), 10)


def test_cli_nightly_prints_a_kernel_version_change_beside_the_regression(tmp_path: Path) -> None:
    """`kjlab nightly` twice (fake cells, no builds): the second night's Debian 6.1 is a new
    version and one cell fails; the command says which version changed, before the cells."""
    matrix_path = write_matrix(tmp_path, {"6.1": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide"])
    a, b = (c.id for c in load_matrix(matrix_path).cells)

    def night(modes: dict[str, str]) -> subprocess.CompletedProcess[str]:
        script = DRIVER.format(root=str(ROOT), tests=str(Path(__file__).parent), modes=modes, markers=str(tmp_path),
                               matrix=str(matrix_path), runs=str(tmp_path / "runs"),
                               history=str(tmp_path / "h.sqlite"))
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    first = night({a: "pass@6.1.192-3", b: "pass@6.1.192-3"})
    assert first.returncode == 0 and "kernel 6.1:" not in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]
    second = night({a: "pass@6.1.193-1", b: "panic@6.1.193-1"})
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    lines = [line.strip() for line in second.stdout.splitlines()]
    change = "kernel 6.1: 6.1.192-3 -> 6.1.193-1"
    assert lines.index(change) < lines.index(f"REGRESSION {b} (PASS -> PANIC) [{change}]: Kernel panic - not syncing")
    assert "1 kernel(s) of another version than the previous night's" in lines
    with History(tmp_path / "h.sqlite") as h:
        first_night, second_night = h.nights("fake")
        assert h.versions_trend("fake", b) == [(first_night.name, "6.1.192-3"), (second_night.name, "6.1.193-1")]
