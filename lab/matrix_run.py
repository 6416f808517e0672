"""Running a matrix: shared artifacts built once, then the cells, each isolated (its own
scenario file, run directory, disk, sockets and QEMU processes) in a subprocess, several
at a time.

A kernel that does not build makes only the cells that use it ERROR (the build's error
lines are their reason); the others run. A cell's failure or hang never stops the others.
Each cell is reported (on_done) as soon as it ends, so a caller can record it at once.
Every cell runs in a session of its own and dies with the matrix process
(lab.lifetime.die_with_parent); when it exits, whatever it left in its process group is
killed. SIGINT or SIGTERM stops the matrix: no new cell starts, the running cells'
groups get SIGTERM (each writes its partial results), then SIGKILL after a grace time,
and the cells that were running are reported as interrupted."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .arch import Arch
from .artifacts.initramfs import build_base
from .artifacts.kernel import KernelSpec, build_kernel
from .errors import InfraError
from .lifetime import die_with_parent, end_group, exited, group_members, kill_group, stop_signals
from .matrix import Cell, Matrix
from .runner import kernel_a_spec, kernel_spec
from .scenario import load_scenario

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
GRACE_SECONDS = 30.0  # after SIGTERM, before SIGKILL: a cell writes its partial results
MAX_REASON = 3000  # characters of a build failure kept as the cells' reason

# (cell, its scenario file, its runs directory, keep) -> the command that runs it
CellArgv = Callable[[Cell, Path, Path, str], list[str]]


def kjlab_run_argv(cell: Cell, scenario_file: Path, cell_runs: Path, keep: str) -> list[str]:
    return [sys.executable, "-m", "lab.cli", "run", str(scenario_file), "--runs-dir", str(cell_runs), "--keep", keep]


@dataclass
class CellOutcome:
    cell: Cell
    run_dir: Path | None  # the cell's run directory (results.json, report.html)
    returncode: int | None
    seconds: float
    log_path: Path
    timed_out: bool = False  # ended by the matrix's cell_timeout
    interrupted: bool = False  # still running when the matrix was stopped (SIGINT/SIGTERM)
    not_run: str = ""  # why the cell never ran (its kernel did not build), "" when it ran


@dataclass
class CellsRun:
    outcomes: list[CellOutcome]
    interrupted: bool = False  # the matrix was stopped: cells not started are not in outcomes
    signal: str = ""


@dataclass
class _Running:
    cell: Cell
    proc: subprocess.Popen[bytes]
    started: float
    cell_runs: Path
    log_path: Path
    terminated_at: float | None = None  # when the cell timeout sent SIGTERM


def write_cell_files(matrix: Matrix, night_dir: Path) -> dict[str, Path]:
    cells_dir = night_dir / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for cell in matrix.cells:
        path = cells_dir / f"{cell.slug}.toml"
        path.write_text(f"# matrix {matrix.name} ({matrix.path}), cell {cell.id}\n" + tomli_w.dumps(cell.scenario))
        paths[cell.id] = path
    return paths


def prebuild(scenario_files: dict[str, Path], log_path: Path, *, base: bool = True) -> dict[str, str]:
    """Every distinct kernel and the base initramfs, once, before the cells run in parallel.

    Returns {cell id: reason} of the cells that cannot run: those whose kernel failed to
    build (the reason holds the build's error lines), all of them when the base image
    failed. A bad input (UserError) still stops the whole matrix.
    """
    kernels = kernels_of(scenario_files)
    blocked: dict[str, str] = {}
    for i, (spec, cids) in enumerate(kernels.values(), 1):
        log.info("shared artifacts: kernel %d/%d (%s, patches: %s)", i, len(kernels), spec.source,
                 ", ".join(spec.patches) or "none")
        try:
            build_kernel(spec, log_path=log_path)
        except InfraError as e:
            log.error("kernel %s (patches: %s) did not build; its %d cells are ERROR:\n%s", spec.source,
                      ", ".join(spec.patches) or "none", len(cids), e)
            blocked.update(dict.fromkeys(cids, build_failure_reason("the cell's kernel did not build", e)))
    if base:
        for arch, cids in arches_of(scenario_files).items():
            try:
                build_base(arch, log_path=log_path)
            except InfraError as e:
                log.error("the %s base initramfs did not build; its %d cells are ERROR:\n%s", arch, len(cids), e)
                for cid in cids:
                    blocked.setdefault(cid, build_failure_reason(f"the {arch} base initramfs did not build", e))
    return blocked


def arches_of(scenario_files: dict[str, Path]) -> dict[Arch, list[str]]:
    """The arches of the cells (each needs its own base initramfs): {arch: cell ids}."""
    arches: dict[Arch, list[str]] = {}
    for cid, path in scenario_files.items():
        arches.setdefault(load_scenario(path).kernel.arch, []).append(cid)
    return arches


def kernels_of(scenario_files: dict[str, Path]) -> dict[str, tuple[KernelSpec, list[str]]]:
    """The distinct kernels of the cells: {repr(spec): (spec, the ids of the cells that use it)}."""
    kernels: dict[str, tuple[KernelSpec, list[str]]] = {}
    for cid, path in scenario_files.items():
        sc = load_scenario(path)
        for spec in (kernel_spec(sc), kernel_a_spec(sc)):  # and kernel A where it is built apart
            if spec is not None:
                kernels.setdefault(repr(spec), (spec, []))[1].append(cid)
    return kernels


def build_failure_reason(what: str, e: Exception) -> str:
    text = f"{what}: {e}"
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + " ..."


def run_cells(matrix: Matrix, scenario_files: dict[str, Path], night_dir: Path, parallel: int,
              on_done: Callable[[CellOutcome], None] | None = None, keep: str = "failed", *,
              not_run: dict[str, str] | None = None, cell_argv: CellArgv = kjlab_run_argv,
              grace: float = GRACE_SECONDS) -> CellsRun:
    """Run the cells, `parallel` at a time, from this (the main) thread; on_done sees
    each outcome as the cell ends. Cells in `not_run` are reported at once, not run."""
    runs_dir, logs_dir = night_dir / "runs", night_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    pending = deque(matrix.cells)
    running: dict[str, _Running] = {}
    outcomes: list[CellOutcome] = []
    not_run = not_run or {}

    def done(outcome: CellOutcome) -> None:
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)

    with stop_signals() as stop:
        try:
            while (pending or running) and not stop.requested:
                while pending and len(running) < max(1, parallel) and not stop.requested:
                    cell = pending.popleft()
                    if cell.id in not_run:
                        done(CellOutcome(cell, None, None, 0.0, logs_dir / f"{cell.slug}.log",
                                         not_run=not_run[cell.id]))
                        continue
                    cell_runs = runs_dir / cell.slug
                    running[cell.id] = _start(cell, cell_argv(cell, scenario_files[cell.id], cell_runs, keep),
                                              cell_runs, logs_dir / f"{cell.slug}.log")
                for r in list(running.values()):
                    if exited(r.proc):
                        del running[r.cell.id]
                        done(_reap(r))
                    elif time.monotonic() - r.started > matrix.cell_timeout:
                        _timeout(r, matrix.cell_timeout, grace)
                if running or pending:
                    time.sleep(POLL_SECONDS)
        except BaseException:  # a lab error here (a cell that cannot start, a full disk): no orphans
            log.error("matrix stopped by an error: ending %d running cells", len(running))
            end_group((r.proc for r in running.values()), min(grace, 5.0), stop.hurry)
            raise
        if not stop.requested:
            return CellsRun(outcomes)
        name = signal.Signals(stop.signum).name
        log.warning("%s: ending %d running cells (%d not started)", name, len(running), len(pending))
        end_group((r.proc for r in running.values()), grace, stop.hurry)
        for r in running.values():
            done(_reap(r, interrupted=True))
    return CellsRun(outcomes, interrupted=True, signal=name)


def _start(cell: Cell, argv: list[str], cell_runs: Path, log_path: Path) -> _Running:
    with open(log_path, "w") as logf:
        # its own session: our Ctrl-C is ours to pass on, and its group is all it started
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=die_with_parent)
    log.info("cell %s: started (pid %d)", cell.id, proc.pid)
    return _Running(cell, proc, time.monotonic(), cell_runs, log_path)


def _timeout(r: _Running, limit: float, grace: float) -> None:
    """The cell ran past the matrix's cell_timeout: SIGTERM its group, SIGKILL after grace."""
    if r.terminated_at is None:
        log.warning("cell %s: over %.0f s, ending it", r.cell.id, limit)
        r.terminated_at = time.monotonic()
        kill_group(r.proc.pid, signal.SIGTERM)
    elif time.monotonic() - r.terminated_at > grace:
        kill_group(r.proc.pid, signal.SIGKILL)


def _reap(r: _Running, interrupted: bool = False) -> CellOutcome:
    """The cell's process has exited: kill what it left in its group, reap it, find its run."""
    leftovers = group_members(r.proc.pid)
    if leftovers:
        log.warning("cell %s: killing %d processes it left behind (pids %s)", r.cell.id, len(leftovers),
                    ", ".join(map(str, leftovers)))
        kill_group(r.proc.pid, signal.SIGKILL)
    r.proc.wait()
    dirs = sorted(r.cell_runs.glob("*/results.json")) if r.cell_runs.exists() else []
    return CellOutcome(r.cell, dirs[-1].parent if dirs else None, r.proc.returncode,
                       time.monotonic() - r.started, r.log_path, timed_out=r.terminated_at is not None,
                       interrupted=interrupted)

