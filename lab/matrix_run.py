"""Running a matrix: shared artifacts built once, then the cells, each isolated (its own
scenario file, run directory, disk, sockets and QEMU processes) in a subprocess, several
at a time. A cell's failure or hang never stops the others; Ctrl-C ends the running
cells cleanly (SIGTERM: each writes its partial results) and keeps what finished."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .build.initramfs import build_base
from .build.kernel import build_kernel
from .matrix import Cell, Matrix
from .runner import kernel_spec
from .scenario import load_scenario

log = logging.getLogger(__name__)


@dataclass
class CellOutcome:
    cell: Cell
    run_dir: Path | None  # the cell's run directory (results.json, report.html)
    returncode: int | None
    seconds: float
    log_path: Path
    timed_out: bool = False


def write_cell_files(matrix: Matrix, night_dir: Path) -> dict[str, Path]:
    cells_dir = night_dir / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for cell in matrix.cells:
        path = cells_dir / f"{cell.slug}.toml"
        path.write_text(f"# matrix {matrix.name} ({matrix.path}), cell {cell.id}\n" + tomli_w.dumps(cell.scenario))
        paths[cell.id] = path
    return paths


def prebuild(scenario_files: dict[str, Path], log_path: Path) -> None:
    """Every distinct kernel and the base initramfs, once, before the cells run in parallel."""
    specs = {}
    for path in scenario_files.values():
        sc = load_scenario(path)
        specs[repr(kernel_spec(sc))] = kernel_spec(sc)
    for i, spec in enumerate(specs.values(), 1):
        log.info("shared artifacts: kernel %d/%d (%s, patches: %s)", i, len(specs), spec.source,
                 ", ".join(spec.patches) or "none")
        build_kernel(spec, log_path=log_path)
    build_base("i386", log_path=log_path)


def run_cells(matrix: Matrix, scenario_files: dict[str, Path], night_dir: Path, parallel: int,
              on_done: Callable[[CellOutcome], None] | None = None, keep: str = "failed") -> list[CellOutcome]:
    runs_dir, logs_dir = night_dir / "runs", night_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    running: dict[str, subprocess.Popen] = {}
    lock = threading.Lock()
    stopping = threading.Event()

    def one(cell: Cell) -> CellOutcome:
        cell_runs = runs_dir / cell.slug
        log_path = logs_dir / f"{cell.slug}.log"
        if stopping.is_set():
            return CellOutcome(cell, None, None, 0.0, log_path)
        argv = [sys.executable, "-m", "lab.cli", "run", str(scenario_files[cell.id]), "--runs-dir", str(cell_runs),
                "--keep", keep]
        t0 = time.monotonic()
        timed_out = False
        with open(log_path, "w") as logf:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # its own group: our Ctrl-C is ours to pass on
            with lock:
                running[cell.id] = proc
            try:
                proc.wait(matrix.cell_timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                log.warning("cell %s: over %.0f s, ending it", cell.id, matrix.cell_timeout)
                _end(proc)
            finally:
                with lock:
                    running.pop(cell.id, None)
        dirs = sorted(cell_runs.glob("*/results.json")) if cell_runs.exists() else []
        outcome = CellOutcome(cell, dirs[-1].parent if dirs else None, proc.returncode, time.monotonic() - t0,
                              log_path, timed_out)
        if on_done:
            on_done(outcome)
        return outcome

    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="cell")
    futures = [pool.submit(one, cell) for cell in matrix.cells]
    try:
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        stopping.set()
        with lock:
            procs = list(running.values())
        log.warning("interrupted: ending %d running cells", len(procs))
        for proc in procs:
            _end(proc)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM to the cell's process group (it writes partial results), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def read_result(run_dir: Path | None) -> dict:
    if run_dir is None or not (run_dir / "results.json").is_file():
        return {}
    return json.loads((run_dir / "results.json").read_text())
