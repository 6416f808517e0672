"""The lab's promises under faults, on real processes (`pytest -m faults`, part of CI):
killed at any step it leaves no QEMU behind and a record on disk; two runs at once do
not collide; a host disk that fills up, a guest disk too small, a damaged cache entry and
bad input each end the way the README says (verdict, exit code, what is kept)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.verdict import EXIT_CANNOT_TEST, EXIT_INTERRUPTED, EXIT_USAGE

pytestmark = pytest.mark.faults

KJLAB = [sys.executable, "-m", "lab.cli"]
DEFAULT = SCENARIOS_DIR / "i386-hibernate.toml"


def qemu_processes_for(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", f"qemu-system.*{path}"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def gone_within(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not qemu_processes_for(path):
            return True
        time.sleep(0.2)
    return False


def start_run(runs_dir: Path, scenario: Path = DEFAULT, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*KJLAB, "run", str(scenario), "--runs-dir", str(runs_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step(proc: subprocess.Popen[str], runs_dir: Path, step: str, timeout: float = 1200) -> Path:
    """The run directory once the run is inside `step` (its record says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for run_dir in (p for p in runs_dir.iterdir() if p.is_dir()):
            try:
                steps = json.loads((run_dir / "results.json").read_text())["steps"]
            except (OSError, ValueError):
                continue
            if steps and steps[-1]["name"] == step and steps[-1]["outcome"] == "running":
                return run_dir
        time.sleep(0.1)
    out = proc.stdout.read() if proc.poll() is not None and proc.stdout else ""
    raise AssertionError(f"the run never reached {step} (exit {proc.poll()}): {out[-2000:]}")


@pytest.mark.parametrize("step", ["boot-A", "jump-to-B", "boot-C", "jump-back"])
def test_sigkill_at_any_step_leaves_no_qemu_and_a_readable_record(tmp_path: Path, step: str) -> None:
    proc = start_run(tmp_path)
    run_dir = wait_for_step(proc, tmp_path, step)
    time.sleep(0.5)
    assert qemu_processes_for(run_dir), f"QEMU should be running in {step}"
    proc.kill()  # SIGKILL: no handler runs; PR_SET_PDEATHSIG ends QEMU
    proc.wait(30)
    assert gone_within(run_dir, 10), qemu_processes_for(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    assert res["verdict"] == "RUNNING" and res["steps"][-1]["name"] == step
    # The record still renders, and says the run was killed without a verdict.
    report = subprocess.run([*KJLAB, "report", str(run_dir)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "killed without a verdict" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize("sig,step", [(signal.SIGTERM, "jump-to-B"), (signal.SIGINT, "load-image"),
                                      (signal.SIGTERM, "save-image")])
def test_sigterm_and_sigint_end_the_run_as_interrupted(tmp_path: Path, sig: signal.Signals, step: str) -> None:
    proc = start_run(tmp_path)
    run_dir = wait_for_step(proc, tmp_path, step)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, out[-3000:]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["verdict"] == "INTERRUPTED" and res["failed_step"] == step
    assert "INTERRUPTED" in (run_dir / "report.html").read_text()
    assert not qemu_processes_for(run_dir)


def test_sigterm_ends_a_suite_and_its_summary_says_where(tmp_path: Path) -> None:
    """`kjlab run DIR` (a suite, as the bug library runs): SIGTERM during the second of three
    scenarios ends that run INTERRUPTED and the suite at once; no QEMU is left, and the
    summary lists the finished run, the interrupted one and the one not run."""
    suite = tmp_path / "suite"
    suite.mkdir()
    for name, src in (("1-reboot", "flows/kexec-reboot.toml"), ("2-hibernate", "i386-hibernate.toml"),
                      ("3-reboot", "flows/kexec-reboot.toml")):
        text = (SCENARIOS_DIR / src).read_text()
        (suite / f"{name}.toml").write_text(text.replace('name = "flow-kexec-reboot"', f'name = "{name}"')
                                            .replace('name = "i386-hibernate"', f'name = "{name}"'))
    runs = tmp_path / "runs"
    proc = start_run(runs, suite)
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline and proc.poll() is None:
        records = list(runs.glob("*-suite-suite/*-2-hibernate/results.json"))
        steps = json.loads(records[0].read_text())["steps"] if records else []
        if steps and steps[-1]["name"] == "jump-to-B" and steps[-1]["outcome"] == "running":
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, out[-3000:]
    assert gone_within(runs, 10), qemu_processes_for(runs)
    (suite_dir,) = runs.iterdir()
    summary = json.loads((suite_dir / "summary.json").read_text())
    assert [(e["scenario"], e["verdict"]) for e in summary] == [("1-reboot", "PASS"), ("2-hibernate", "INTERRUPTED")]
    assert summary[1]["failed_step"] == "jump-to-B"
    html = (suite_dir / "summary.html").read_text()
    assert "interrupted: 1 scenarios not run (3-reboot)" in html
    assert "NOT every scenario reached its expected verdict" in html
    assert not list(suite_dir.glob("*-3-reboot"))


def test_two_runs_of_one_scenario_at_once_both_pass_in_their_own_directories(tmp_path: Path) -> None:
    procs = [start_run(tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-3000:] for o in outs]
    dirs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(dirs) == 2
    for d in dirs:
        assert json.loads((d / "results.json").read_text())["verdict"] == "PASS"
        assert not qemu_processes_for(d)


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 300 MiB tmpfs as the runs directory: the two snapshots of A's 120 MiB fit, the
    image B then writes to the hibernation disk does not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_host_disk_that_fills_up_is_a_lab_error_and_keeps_its_record(small_tmpfs: Path) -> None:
    proc = subprocess.run([*KJLAB, "run", str(DEFAULT), "--runs-dir", str(small_tmpfs)],
                          capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_CANNOT_TEST, out[-3000:]
    (run_dir,) = [p for p in small_tmpfs.iterdir() if p.is_dir()]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["verdict"] == "HOST_IO_ERROR", (res["reason"], res["evidence"])
    assert "disk" in res["reason"] and "No space left on device" in "\n".join([res["reason"], *res["evidence"]])
    # To write the record and the report, the lab deleted the run's bulk, and says so.
    assert (run_dir / "report.html").is_file() and not list(run_dir.glob("*.tmp"))
    assert res["snapshots"] and all("host's disk was full" in s.get("deleted", "") for s in res["snapshots"])
    assert "Traceback" not in out
    assert not qemu_processes_for(run_dir)


def test_a_guest_disk_too_small_for_the_image_is_save_failed(tmp_path: Path) -> None:
    proc = subprocess.run([*KJLAB, "run", str(SCENARIOS_DIR / "checks/guest-disk-too-small.toml"),
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["observed_verdict"] == "SAVE_FAILED" and res["verdict"] == "XFAIL", (res["reason"], res["evidence"])
    assert res["failed_step"] == "save-image" and proc.returncode == 0
    assert any("No space left on device" in line for line in res["evidence"])
    assert not qemu_processes_for(run_dir)


def test_bad_input_is_refused_with_the_file_and_the_key(tmp_path: Path) -> None:
    cases = {
        "name": ('[scenario]\nname = "../../x"\n', "scenario.name"),
        "timeout": ('[flow]\ntimeouts = {boot = inf}\n', "flow.timeouts"),
        "verdict": ('[expect]\nverdict = "TRIPLE_FAULT"\n', "expect.step"),
        "package": ('[guest]\nextra_packages = ["-oAPT::Get=1"]\n', "guest.extra_packages"),
    }
    for label, (text, key) in cases.items():
        path = tmp_path / f"{label}.toml"
        path.write_text(text)
        proc = subprocess.run([*KJLAB, "run", str(path), "--runs-dir", str(tmp_path / "runs")],
                              capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == EXIT_USAGE, (label, out)
        assert str(path) in out and key in out, (label, out)
        assert "Traceback" not in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("content,problem", [('{"run_id": "x", "steps": [', "not JSON"), ("{ not json", "not JSON"),
                                             ("{}", "no 'steps'"), ("[1, 2]", "a JSON list, not an object")])
def test_a_damaged_record_is_bad_input_in_one_line(tmp_path: Path, content: str, problem: str) -> None:
    """A truncated, non-JSON or empty results.json given to `report` or `compare` is bad
    input (exit 2, one line naming the file and what is wrong), not a bug of the lab."""
    run_dir = tmp_path / "20260101-000000-broken"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(content)
    for argv in (["report", str(run_dir)], ["compare", str(run_dir), str(run_dir)]):
        proc = subprocess.run([*KJLAB, *argv], capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == EXIT_USAGE, (argv, out)
        assert "Traceback" not in out and "internal error" not in out, out
        assert f"{run_dir / 'results.json'}: not a kjlab run record: {problem}" in " ".join(out.split()), out


def kill_qemu_of(run_dir: Path, sig: signal.Signals) -> str:
    """Send `sig` to the one QEMU of the run (not to kjlab): as the OOM killer or an operator."""
    (line,) = qemu_processes_for(run_dir)
    os.kill(int(line.split()[0]), sig)
    return line


@pytest.mark.parametrize("sig,step", [(signal.SIGKILL, "boot-A"), (signal.SIGKILL, "save-image"),
                                      (signal.SIGKILL, "load-image"), (signal.SIGTERM, "boot-C")])
def test_a_qemu_killed_from_outside_is_a_lab_error_naming_the_signal(tmp_path: Path, sig: signal.Signals,
                                                                     step: str) -> None:
    """QEMU killed under the lab is no verdict on the kernel (not GUEST_RESET, not HANG):
    QEMU_KILLED, a lab error (exit 125) naming the machine and the signal."""
    proc = start_run(tmp_path)
    run_dir = wait_for_step(proc, tmp_path, step)
    time.sleep(0.3)  # inside the step (each takes 2.5 s or more)
    line = kill_qemu_of(run_dir, sig)
    out, _ = proc.communicate(timeout=600)
    res = json.loads((run_dir / "results.json").read_text())
    assert res["verdict"] == "QEMU_KILLED", (res["reason"], res["evidence"], out[-2000:])
    assert proc.returncode == EXIT_CANNOT_TEST
    machine = "C-A" if "serial-C-A" in line else "A-B"
    assert f"QEMU of machine {machine} was killed by" in res["reason"]
    assert (sig.name if sig is signal.SIGKILL else "SHUTDOWN host-signal") in res["reason"]
    assert res["failed_step"] == step
    assert gone_within(run_dir, 10), qemu_processes_for(run_dir)


# -- matrices and nights -----------------------------------------------------------------------

GDT_FIX = "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
BROKEN_PATCH = """--- a/kernel/no-such-file.c
+++ b/kernel/no-such-file.c
@@ -1,3 +1,3 @@
 a
-b
+c
 d
"""


def write_matrix(path: Path, machines: list[str], patchsets: str) -> Path:
    """A small matrix on bookworm's 6.1: the kernel of the default scenario (cached)."""
    path.write_text(f"""[matrix]
name = "{path.stem.replace('.matrix', '')}"
machines = {json.dumps(machines)}
flows = ["hibernate"]
parallel = 1
cell_timeout = 900

[[kernel]]
name = "6.1"
source = "debian:linux-source-6.1"
{patchsets}""")
    return path


def test_a_kernel_that_fails_to_build_errors_only_its_cells(tmp_path: Path) -> None:
    broken = tmp_path / "9999-broken.patch"
    broken.write_text(BROKEN_PATCH)
    matrix = write_matrix(tmp_path / "build-fails.matrix.toml", ["pc-virtio"], f"""
[[patchset]]
name = "fix"
patches = ["{GDT_FIX}"]

[[patchset]]
name = "broken"
patches = ["{GDT_FIX}", "{broken}"]
""")
    history = tmp_path / "history.sqlite"
    proc = subprocess.run([*KJLAB, "nightly", str(matrix), "--runs-dir", str(tmp_path / "runs"),
                           "--history", str(history)], capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    (night,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    junit = (night / "junit.xml").read_text()
    assert 'tests="2"' in junit, junit[:500]
    import sqlite3

    with sqlite3.connect(history) as db:
        rows = dict(db.execute("SELECT cell, verdict FROM cells").fetchall())
        reasons = dict(db.execute("SELECT cell, reason FROM cells").fetchall())
    assert rows == {"6.1/i386/pc-virtio/hibernate/fix": "PASS", "6.1/i386/pc-virtio/hibernate/broken": "ERROR"}, rows
    # git am's own words for a patch of a file the tree lacks, with the patch named
    broken = reasons["6.1/i386/pc-virtio/hibernate/broken"]
    assert "kernel/no-such-file.c: does not exist in index" in broken and "9999-broken.patch" in broken, reasons
    assert not qemu_processes_for(tmp_path)


def test_a_qemu_killed_in_a_matrix_cell_is_a_lab_error_of_that_cell(tmp_path: Path) -> None:
    """The nightly's own record: a cell whose QEMU was killed from outside is QEMU_KILLED
    (a lab error in JUnit), never a kernel failure; the other cell still passes."""
    matrix = write_matrix(tmp_path / "killed.matrix.toml", ["pc-virtio", "pc-ide"], f"""
[[patchset]]
name = "fix"
patches = ["{GDT_FIX}"]
""")
    history = tmp_path / "history.sqlite"
    proc = subprocess.Popen([*KJLAB, "nightly", str(matrix), "--runs-dir", str(tmp_path / "runs"),
                             "--history", str(history)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, killed = time.monotonic() + 1800, False
    while time.monotonic() < deadline and proc.poll() is None and not killed:
        for r in (tmp_path / "runs").rglob("results.json") if (tmp_path / "runs").exists() else []:
            try:
                steps = json.loads(r.read_text())["steps"]
            except (OSError, ValueError):
                continue
            if steps and steps[-1]["name"] == "jump-to-B" and steps[-1]["outcome"] == "running" \
                    and qemu_processes_for(r.parent):
                time.sleep(0.5)
                kill_qemu_of(r.parent, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=1800)
    assert killed, out[-3000:]
    import sqlite3

    with sqlite3.connect(history) as db:
        cells = dict(db.execute("SELECT cell, verdict FROM cells").fetchall())
    assert sorted(cells.values()) == ["PASS", "QEMU_KILLED"], cells
    (night,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    junit = (night / "junit.xml").read_text()
    assert "<error" in junit and "QEMU_KILLED" in junit, junit[:2000]
    assert not qemu_processes_for(tmp_path)


def test_a_night_stopped_halfway_keeps_what_finished(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path / "stopped.matrix.toml", ["pc-virtio", "pc-ide", "pc-scsi"], f"""
[[patchset]]
name = "fix"
patches = ["{GDT_FIX}"]
""")
    history = tmp_path / "history.sqlite"
    proc = subprocess.Popen([*KJLAB, "nightly", str(matrix), "--runs-dir", str(tmp_path / "runs"),
                             "--history", str(history)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Wait until the first cell has finished and the second is inside its jump.
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and proc.poll() is None:
        finished = list((tmp_path / "runs").rglob("report.html")) if (tmp_path / "runs").exists() else []
        running = [p for p in (tmp_path / "runs").rglob("results.json")] if finished else []
        states = []
        for r in running:
            try:
                steps = json.loads(r.read_text())["steps"]
            except (OSError, ValueError):
                continue
            states.append(steps[-1]["name"] if steps and steps[-1]["outcome"] == "running" else "")
        if "jump-to-B" in states:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
    assert qemu_processes_for(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_INTERRUPTED, out[-3000:]
    assert gone_within(tmp_path, 10), qemu_processes_for(tmp_path)
    import sqlite3

    with sqlite3.connect(history) as db:
        (status,) = db.execute("SELECT status FROM nights").fetchone()
        cells = dict(db.execute("SELECT cell, verdict FROM cells").fetchall())
    assert status == "interrupted"
    assert cells.get("6.1/i386/pc-virtio/hibernate/fix") == "PASS", cells
    assert "INTERRUPTED" in cells.values(), cells
    (night,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    for name in ("summary.html", "junit.xml", "kcidb.json"):
        assert (night / name).is_file(), name


def test_a_truncated_cache_entry_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    from lab.cache import cache_root

    first = subprocess.run([*KJLAB, "run", str(DEFAULT), "--runs-dir", str(tmp_path / "1"), "--keep", "failed"],
                           capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    (run_dir,) = [p for p in (tmp_path / "1").iterdir() if p.is_dir()]
    key = json.loads((run_dir / "results.json").read_text())["provenance"]["initramfs"]["a_key"]
    entry = cache_root() / "initramfs" / key
    image = entry / "initramfs.gz"
    size = image.stat().st_size
    with open(image, "r+b") as f:  # half of it gone, as after a crash before the data hit the disk
        f.truncate(size // 2)
    second = subprocess.run([*KJLAB, "run", str(DEFAULT), "--runs-dir", str(tmp_path / "2"), "--keep", "failed"],
                            capture_output=True, text=True, timeout=1800)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert "not trusted, rebuilding" in out
    assert image.stat().st_size == size
