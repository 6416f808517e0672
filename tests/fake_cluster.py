"""A real Dask cluster on this machine for tests: a `dask scheduler` process and worker
processes (`dask worker --no-nanny`, so a killed worker stays dead), each worker with its
own kjlab cache; and the picklable fakes the workers run (cell commands, needs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab.executors.capabilities import cell_needs
from lab.matrix import Cell

ROOT = Path(__file__).resolve().parent.parent
FAKE_CELL = Path(__file__).with_name("fake_cell.py")


@dataclass(frozen=True)
class FakeCellArgv:
    """cell_argv for the workers: tests/fake_cell.py in the mode named for the cell."""

    modes: dict[str, str]
    markers: str

    def __call__(self, cell: Cell, scenario_file: Path, cell_runs: Path, keep: str) -> list[str]:
        return [sys.executable, str(FAKE_CELL), self.modes[cell.id], str(scenario_file), str(cell_runs), self.markers]


@dataclass(frozen=True)
class NeedsExtra:
    """cell_needs, plus capabilities no host here has for some cells (routing tests)."""

    extra: dict[str, frozenset[str]] = field(default_factory=dict)

    def __call__(self, cell: Cell) -> set[str]:
        return cell_needs(cell) | set(self.extra.get(cell.id, frozenset()))


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]]  # name -> process
    root: Path

    def worker_cache(self, name: str) -> Path:
        return self.root / f"cache-{name}"


def _wait(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


@contextmanager
def local_cluster(root: Path, workers: int = 2, vm: int = 2, own_caches: bool = True,
                  tls: tuple[str, str, str] | None = None) -> Iterator[Cluster]:
    """A scheduler and `workers` worker processes, each `vm` VM slots; all ended after.
    `own_caches`: each worker its own kjlab cache (else they share this process's).
    `tls`: (CA file, certificate, key) for every member; the cluster speaks only TLS."""
    tls_args = [] if tls is None else ["--tls-ca-file", tls[0], "--tls-cert", tls[1], "--tls-key", tls[2]]
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    sched_file = root / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(root / "scheduler.log", "wb") as out:
            sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                      "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file),
                                      *(["--protocol", "tls", *tls_args] if tls else [])],
                                     stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(sched)
        _wait(lambda: sched_file.is_file() and sched_file.stat().st_size > 0, 60, "the scheduler did not start")
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        named = {}
        for i in range(1, workers + 1):
            name = f"w{i}"
            wenv = dict(env, KJLAB_CACHE=str(root / f"cache-{name}")) if own_caches else env
            with open(root / f"{name}.log", "wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name,
                                         "--nthreads", str(vm), "--resources", f"vm={vm}", "--no-nanny",
                                         "--no-dashboard", "--local-directory", str(root / f"{name}-dir"),
                                         *tls_args],
                                        stdout=out, stderr=subprocess.STDOUT, env=wenv, start_new_session=True)
            procs.append(proc)
            named[name] = proc
        from distributed import Client

        from lab.executors.dask import tls_security

        with Client(address, timeout="30s", security=tls_security(*tls) if tls else None) as client:
            client.wait_for_workers(workers, timeout=120)
        yield Cluster(address, sched, named, root)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
