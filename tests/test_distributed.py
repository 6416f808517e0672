"""A real night on a Dask cluster of this machine: a scheduler and two worker processes
(one VM slot each), three real cells of the nightly matrix (6.1 with the fixes, on three
machines, the kernel cache warm), one worker killed while its cell runs. Every cell is
recorded once, PASS. Long: `pytest -m distributed` (take /work/qemu.lock around it on a
shared machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.history import History, NightStatus
from lab.matrix import load_matrix
from tests.fake_cluster import local_cluster

pytestmark = pytest.mark.distributed
NIGHTLY = SCENARIOS_DIR / "matrices" / "nightly-i386.matrix.toml"
MACHINES = ["pc-virtio", "pc-ide", "pc-scsi"]


def small_matrix(tmp_path: Path) -> Path:
    """Three cells of the nightly, with the nightly's kernel (the same fragments: the
    kernel cache's entry serves)."""
    fragments = load_matrix(NIGHTLY).cells[0].scenario["kernel"]["fragments"]
    path = tmp_path / "small.matrix.toml"
    path.write_text(f"""\
[matrix]
name = "dask-small"
machines = {MACHINES!r}
flows = ["hibernate"]
fragments = {fragments!r}
cell_timeout = 1200

[[kernel]]
name = "6.1"
source = "debian:linux-source-6.1"

[[patchset]]
name = "fixes"
patches = [
  "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch",
  "0002-x86-kexec-kick-offline-cpus-out-of-mwait-before-a-kexec-jump.patch",
]
""".replace("'", '"'))
    return path


def first_cell_on_a_worker(cluster_root: Path, seconds: float) -> tuple[str, str]:
    """(worker name, cell slug) of the first cell seen running: its scratch directory."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for scratch in sorted(cluster_root.glob("w*-dir/**/kjlab/6.1_i386_*")):
            worker = scratch.relative_to(cluster_root).parts[0].removesuffix("-dir")
            return worker, scratch.name.rsplit("-", 1)[0]
        time.sleep(0.2)
    pytest.fail("no cell started on a worker")


def test_a_real_night_on_two_workers_survives_a_killed_worker(tmp_path: Path) -> None:
    matrix = small_matrix(tmp_path)
    runs, history = tmp_path / "runs", tmp_path / "history.sqlite"
    with local_cluster(tmp_path / "cluster", workers=2, vm=1, own_caches=False) as cluster:
        t0 = time.monotonic()
        night = subprocess.Popen([sys.executable, "-m", "lab.cli", "nightly", str(matrix), "--executor", "dask",
                                  "--scheduler", cluster.address, "--store", f"file://{tmp_path / 'store'}",
                                  "--runs-dir", str(runs), "--history", str(history)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        worker, slug = first_cell_on_a_worker(cluster.root, 900)
        time.sleep(10)  # the cell's guest is booting or hibernating
        os.kill(cluster.workers[worker].pid, signal.SIGKILL)
        out = night.communicate(timeout=3600)[0]
        wall = time.monotonic() - t0
    sys.stdout.write(out[-6000:])
    print(f"\nkilled worker {worker} during cell {slug}; the night took {wall:.0f} s")
    assert night.returncode == 0, out[-3000:]
    with History(history) as h:
        (n,) = h.nights("dask-small")
        cells = h.cells(n.id)
    assert n.status == NightStatus.COMPLETED
    assert len(cells) == 3
    assert all(c.verdict == "PASS" for c in cells.values()), {k: (c.verdict, c.reason) for k, c in cells.items()}
    (night_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    log = (night_dir / "logs" / f"{slug}.log").read_text()
    assert "ran on worker" in log and cluster.workers[worker].returncode == -signal.SIGKILL
    for c in cells.values():
        assert Path(c.run_dir).is_relative_to(night_dir) and (Path(c.run_dir) / "results.json").is_file()
        assert Path(c.report).is_file()
    assert (night_dir / "summary.html").read_text().count('class="cell"') == 3
