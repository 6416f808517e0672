"""Where a night's cells run: one interface, two engines.

- lab.executors.local: on this machine, each cell a subprocess (lab.matrix_run); the default.
- lab.executors.dask: on the workers of a Dask ``distributed`` cluster (a worker is a host
  with QEMU; its ``vm`` resource is how many guests it runs at once).

An executor builds the shared artifacts, runs the cells it is given and reports each
outcome (on_done) as the cell ends; lab.nightly records them, whichever engine ran them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..matrix import Matrix
from ..matrix_run import CellOutcome, CellsRun

Build = Callable[[dict[str, Path], Path], dict[str, str]]  # (cell files, build log) -> {cell id: why not run}


class Executor(Protocol):
    @property
    def slots(self) -> int:
        """Cells at once (shown in the night's summary)."""
        ...

    def run(self, matrix: Matrix, files: dict[str, Path], night_dir: Path,
            on_done: Callable[[CellOutcome], None], keep: str) -> CellsRun:
        """Build what the cells share, run every cell of `matrix` (files: each cell's
        scenario file), report each outcome to on_done as it ends (exactly once)."""
        ...
