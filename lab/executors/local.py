"""The local executor: the shared builds (lab.matrix_run.prebuild), then the cells as
subprocesses of this machine, `parallel` at a time (lab.matrix_run.run_cells)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import matrix_run
from ..matrix import Cell, Matrix
from ..matrix_run import GRACE_SECONDS, CellArgv, CellOutcome, CellsRun, run_cells
from . import Build

log = logging.getLogger(__name__)


def prebuild_late(files: dict[str, Path], log_path: Path) -> dict[str, str]:
    return matrix_run.prebuild(files, log_path)  # looked up at call time: tests replace it


def kjlab_run_argv_late(cell: Cell, scenario_file: Path, cell_runs: Path, keep: str) -> list[str]:
    return matrix_run.kjlab_run_argv(cell, scenario_file, cell_runs, keep)


@dataclass
class LocalExecutor:
    parallel: int
    build: Build = field(default=prebuild_late)
    cell_argv: CellArgv = field(default=kjlab_run_argv_late)
    grace: float = GRACE_SECONDS

    @property
    def slots(self) -> int:
        return self.parallel

    def run(self, matrix: Matrix, files: dict[str, Path], night_dir: Path,
            on_done: Callable[[CellOutcome], None], keep: str) -> CellsRun:
        try:
            not_run = self.build(files, night_dir / "build.log")
        except KeyboardInterrupt:
            log.warning("interrupted while building the shared artifacts: no cell ran")
            return CellsRun([], interrupted=True, signal="SIGINT")
        return run_cells(matrix, files, night_dir, self.parallel, on_done, keep, not_run=not_run,
                         cell_argv=self.cell_argv, grace=self.grace)
