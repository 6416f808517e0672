"""The Dask executor on a real cluster of this machine (a scheduler and two worker
processes, each with its own kjlab cache) running fake cells (tests/fake_cell.py) and
real builds of fake kernel trees: capability routing, a kernel built once for the
cluster and fetched from the store, a worker killed mid-cell, a night resumed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.artifact_store import ArtifactStore
from lab.executors.dask import DaskExecutor
from lab.history import History, NightStatus
from lab.matrix import load_matrix
from lab.nightly import run_night
from lab.verdict import Verdict
from tests.fake_cluster import ROOT, FakeCellArgv, NeedsExtra, local_cluster
from tests.test_matrix_run import MAKEFILE, MERGE, write_matrix

COUNTED = ("\techo built >> {counter}\n"
           "\tmkdir -p $(O)/arch/x86/boot && echo kernel > $(O)/arch/x86/boot/bzImage && "
           "echo 'c1000000 T _text' > $(O)/System.map")
BAD = ("\t@echo 'kernel/kexec_core.c:1031:9: error: implicit declaration of function machine_kexec_jump'; "
       "exit 1")


def kernel_tree(root: Path, bzimage: str) -> Path:
    (root / "arch" / "x86").mkdir(parents=True)
    (root / "scripts" / "kconfig").mkdir(parents=True)
    (root / "Makefile").write_text(MAKEFILE.format(bzimage=bzimage))
    merge = root / "scripts" / "kconfig" / "merge_config.sh"
    merge.write_text(MERGE)
    merge.chmod(0o755)
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache-client"))


def wait_for_line(path: Path, n: int, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.1)
    pytest.fail(f"{path}: fewer than {n} lines after {seconds} s")


def test_a_night_on_two_workers_survives_a_killed_worker(tmp_path: Path) -> None:
    counter = tmp_path / "kernel-builds"
    good = kernel_tree(tmp_path / "good", COUNTED.format(counter=counter))
    bad = kernel_tree(tmp_path / "bad", BAD)
    matrix = load_matrix(write_matrix(tmp_path, {"good": f"tree:{good}", "bad": f"tree:{bad}"},
                                      ["pc-virtio", "pc-ide", "pc-scsi"]))
    ids = {c.id for c in matrix.cells}
    slow, panic, nowhere = (f"good/i386/{m}/hibernate/none" for m in ("pc-virtio", "pc-ide", "pc-scsi"))
    modes = dict.fromkeys(ids, "pass") | {slow: "slow", panic: "panic"}
    markers = tmp_path / "markers"
    markers.mkdir()
    history = tmp_path / "history.sqlite"
    store = f"file://{tmp_path / 'store'}"
    recorded: list[str] = []
    with local_cluster(tmp_path / "cluster") as cluster:
        executor = DaskExecutor(cluster.address, store, cell_argv=FakeCellArgv(modes, str(markers)),
                                build_base=False, needs=NeedsExtra({nowhere: frozenset({"qemu-system-sparc64"})}))
        import threading

        killed: list[int] = []

        def kill_the_slow_cells_worker() -> None:
            line = wait_for_line(markers / "good_i386_pc-virtio_hibernate_none.starts", 1, 120)[0]
            worker_pid = int(line.split()[1])  # the cell's parent: the worker process
            killed.append(worker_pid)
            os.kill(worker_pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_the_slow_cells_worker)
        killer.start()
        night = run_night(matrix, tmp_path / "runs", record=True, history_path=history, executor=executor,
                          on_done=lambda rec: recorded.append(rec.cell))
        killer.join()
        assert killed and any(p.pid == killed[0] for p in cluster.workers.values())
        caches = [cluster.worker_cache(n) for n in cluster.workers]

    # every cell recorded exactly once, with the right verdict
    assert sorted(recorded) == sorted(ids)
    recs = night.records
    assert recs[slow].verdict == Verdict.PASS
    assert recs[panic].verdict == Verdict.PANIC
    assert recs[nowhere].verdict == Verdict.ERROR
    assert recs[nowhere].reason.startswith("no worker can run this cell: it needs qemu-system-i386, qemu-system-sparc64")
    for cid in ids:
        if cid.startswith("bad/") and cid != nowhere.replace("good", "bad"):
            assert recs[cid].verdict == Verdict.ERROR and "kernel did not build" in recs[cid].reason
            assert "implicit declaration of function machine_kexec_jump" in recs[cid].reason
    # the slow cell started twice: on the killed worker, then on the other one
    starts = (markers / "good_i386_pc-virtio_hibernate_none.starts").read_text().splitlines()
    assert len(starts) == 2 and starts[0].split()[1] != starts[1].split()[1]
    # its results came back into the night's directory
    run_dir = Path(recs[slow].run_dir)
    assert run_dir.is_relative_to(night.night_dir) and (run_dir / "results.json").is_file()
    assert "ran on worker" in (night.night_dir / "logs" / "good_i386_pc-virtio_hibernate_none.log").read_text()
    # the good kernel: built once for the cluster, in the store, fetched by the other worker
    assert counter.read_text().splitlines() == ["built"]
    (key,) = [p.name for p in (tmp_path / "store" / "artifacts" / "kernel").iterdir() if p.is_dir()]
    assert ArtifactStore(store).has("kernel", key)
    assert all((c / "kernel" / key / "bzImage").is_file() for c in caches)
    with History(history) as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.COMPLETED
        assert {c: r.verdict for c, r in h.cells(n.id).items()} == {c: r.verdict for c, r in recs.items()}
    assert (night.night_dir / "summary.html").is_file() and (night.night_dir / "junit.xml").is_file()


def test_a_resumed_night_runs_only_what_did_not_finish(tmp_path: Path) -> None:
    """The scheduler (or the night's process) died: the history holds one cell, the store a
    DONE record of another; the resumed night runs only the third, in the same directory."""
    matrix = load_matrix(write_matrix(tmp_path, {"k": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide", "pc-scsi"]))
    a, b, c = (cell.id for cell in matrix.cells)
    history = tmp_path / "history.sqlite"
    markers = tmp_path / "markers"
    markers.mkdir()
    store_root = tmp_path / "store"
    # night 1 on the cluster, killed after its first cell: run it with only cell a
    modes = {a: "pass", b: "panic", c: "pass"}
    with local_cluster(tmp_path / "cluster", workers=1) as cluster:
        ex = DaskExecutor(cluster.address, f"file://{store_root}", cell_argv=FakeCellArgv(modes, str(markers)),
                          build_kernels=False, build_base=False)
        from dataclasses import replace

        first = run_night(replace(matrix, cells=matrix.cells[:1]), tmp_path / "runs", record=True,
                          history_path=history, executor=ex)
        with History(history) as h:  # as if the night had died there
            h.reopen_night(first.night_id or 0)
        # cell b finished on a worker, but the night died before it was recorded: its DONE record
        only_b = replace(matrix, cells=[matrix.cells[1]])
        from lab.executors.dask import CellTask, run_cell_task

        run_cell_task(CellTask(only_b.cells[0], matrix.name, str(matrix.path), 60, first.night_dir.name,
                               f"file://{store_root}", "failed", (), FakeCellArgv(modes, str(markers)), 5.0))
        modes_now = {a: "panic", b: "pass", c: "pass"}  # a or b run again would show
        ex2 = DaskExecutor(cluster.address, f"file://{store_root}", cell_argv=FakeCellArgv(modes_now, str(markers)),
                           build_kernels=False, build_base=False)
        night = run_night(matrix, tmp_path / "runs", record=True, history_path=history, executor=ex2, resume=True)
    assert night.night_dir == first.night_dir and night.night_id == first.night_id
    assert {cid: r.verdict for cid, r in night.records.items()} == {a: "PASS", b: "PANIC", c: "PASS"}
    with History(history) as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.COMPLETED
        assert len(h.cells(n.id)) == 3


def make_certificates(d: Path) -> tuple[str, str, str]:
    """A CA and one certificate it signed for 127.0.0.1 (scheduler, workers and client)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kjlab test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(d / "node.key"),
            "-out", str(d / "node.csr"))
    (d / "ext.cnf").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(d / "node.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "node.pem"))
    return str(d / "ca.pem"), str(d / "node.pem"), str(d / "node.key")


def test_a_night_over_tls_through_the_command_line(tmp_path: Path) -> None:
    """kjlab nightly --executor dask with --tls-*: the cluster speaks only TLS."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make certificates")
    tls = make_certificates(tmp_path)
    matrix = write_matrix(tmp_path, {"k": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide"])
    ids = [c.id for c in load_matrix(matrix).cells]
    markers = tmp_path / "markers"
    markers.mkdir()
    driver = DRIVER.format(root=str(ROOT), modes={ids[0]: "pass", ids[1]: "panic"}, markers=str(markers))
    with local_cluster(tmp_path / "cluster", workers=1, tls=tls) as cluster:
        assert cluster.address.startswith("tls://")
        argv = ["nightly", str(matrix), "--executor", "dask", "--scheduler", cluster.address,
                "--store", f"file://{tmp_path / 'store'}", "--runs-dir", str(tmp_path / "runs"),
                "--history", str(tmp_path / "h.sqlite"), "--tls-ca-file", tls[0], "--tls-cert", tls[1],
                "--tls-key", tls[2]]
        proc = subprocess.run([sys.executable, "-c", driver, *argv], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        plain = subprocess.run([sys.executable, "-c", driver, *argv[:-6]], capture_output=True, text=True,
                               timeout=300)
        assert plain.returncode != 0  # no certificate, no night
    with History(tmp_path / "h.sqlite") as h:
        night = h.nights("fake")[0]
        assert {c: r.verdict for c, r in h.cells(night.id).items()} == {ids[0]: "PASS", ids[1]: "PANIC"}


# The CLI with fake cells and no builds: the Dask executor's defaults replaced before main() runs.
DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
import lab.executors.dask as d
from tests.fake_cluster import FakeCellArgv
from lab.cli import main
_init = d.DaskExecutor.__init__
def init(self, *a, **kw):
    _init(self, *a, **kw)
    self.cell_argv, self.build_kernels, self.build_base = FakeCellArgv({modes!r}, {markers!r}), False, False
d.DaskExecutor.__init__ = init
sys.exit(main(sys.argv[1:]))
"""


def test_a_lost_scheduler_stops_the_night_and_resume_carries_it_on(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, {"k": "debian:linux-source-6.1"}, ["pc-virtio", "pc-ide", "pc-scsi"])
    a, b, c = (cell.id for cell in load_matrix(matrix).cells)
    markers = tmp_path / "markers"
    markers.mkdir()
    common = ["--store", f"file://{tmp_path / 'store'}", "--runs-dir", str(tmp_path / "runs"),
              "--history", str(tmp_path / "h.sqlite")]
    with local_cluster(tmp_path / "cluster-1", workers=1, vm=1) as cluster:  # one at a time: a, then b
        first = subprocess.Popen([sys.executable, "-c", DRIVER.format(root=str(ROOT), markers=str(markers),
                                  modes={a: "pass", b: "slow", c: "slow"}),
                                  "nightly", str(matrix), "--executor", "dask", "--scheduler", cluster.address,
                                  *common], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_line(markers / "k_i386_pc-ide_hibernate_none.starts", 1, 120)  # a is done, b runs
        cluster.scheduler.kill()
        out = first.communicate(timeout=120)[0]
    assert first.returncode == 125, out[-3000:]
    assert "lost the Dask scheduler" in out and "--resume" in out
    with History(tmp_path / "h.sqlite") as h:
        (n,) = h.nights("fake")
        assert n.status == NightStatus.FAILED
        before = {cid: r.verdict for cid, r in h.cells(n.id).items()}
    assert b not in before and before and set(before.values()) == {"PASS"}  # b was running when it was lost
    again = {cid: "panic" if cid in before else "pass" for cid in (a, b, c)}  # a cell run twice would show
    with local_cluster(tmp_path / "cluster-2", workers=1) as cluster:  # the scheduler again (a new one)
        second = subprocess.run([sys.executable, "-c", DRIVER.format(root=str(ROOT), markers=str(markers),
                                 modes=again),
                                 "nightly", str(matrix), "--executor", "dask", "--scheduler", cluster.address,
                                 "--resume", *common], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    with History(tmp_path / "h.sqlite") as h:
        (n,) = h.nights("fake")  # the same night, carried on
        assert n.status == NightStatus.COMPLETED
        assert {cid: r.verdict for cid, r in h.cells(n.id).items()} == {a: "PASS", b: "PASS", c: "PASS"}
