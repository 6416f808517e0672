"""`kjlab matrix` and `kjlab nightly`: run a matrix, record every cell in the history,
compare with the previous night, and write the summary page (a grid of kernels x
machines per flow, coloured by verdict, linking every cell's report, with durations and
each cell's trend over the last nights) and the CI exports (JUnit XML, KCIDB JSON)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .history import CellRecord, Comparison, History, compare
from .matrix import Matrix
from .matrix_run import CellOutcome, prebuild, run_cells, write_cell_files
from .report import environment, format_duration, verdict_class
from .verdict import Verdict

log = logging.getLogger(__name__)

TREND_NIGHTS = 7


@dataclass
class NightOutcome:
    night_dir: Path
    summary: Path
    records: dict[str, CellRecord]
    comparison: Comparison | None
    night_id: int | None
    cells_per_hour: float
    wall_seconds: float


def new_night_dir(runs_root: Path, matrix: Matrix, kind: str) -> Path:
    base = runs_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{matrix.name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def run_night(matrix: Matrix, runs_root: Path, *, record: bool, history_path: Path | None = None,
              parallel: int | None = None, on_done: Callable[[CellOutcome], None] | None = None,
              keep: str = "failed") -> NightOutcome:
    """Run every cell; with `record`, keep the night in the history and compare it."""
    night_dir = new_night_dir(runs_root, matrix, "nightly" if record else "matrix")
    t0 = time.monotonic()
    files = write_cell_files(matrix, night_dir)
    prebuild(files, night_dir / "build.log")
    history = History(history_path) if record else None
    night_id = history.start_night(night_dir.name, matrix.name) if history else None
    records: dict[str, CellRecord] = {}
    comparison = None
    try:
        outcomes = run_cells(matrix, files, night_dir, parallel or matrix.parallel, on_done, keep)
        for o in outcomes:
            records[o.cell.id] = _record(o)
            if history and night_id is not None:
                history.record_cell(night_id, records[o.cell.id])
        wall = time.monotonic() - t0
        if history and night_id is not None:
            prev = history.previous_night(matrix.name, night_id)
            comparison = compare(history.cells(prev) if prev else {}, records)
        summary = write_night_summary(night_dir, matrix, records, comparison, history, wall, parallel or matrix.parallel)
        _exports(night_dir, matrix, records)
        if history and night_id is not None:
            history.finish_night(night_id, summary)
    finally:
        if history:
            history.close()
    rate = len(records) / wall * 3600 if wall else 0.0
    return NightOutcome(night_dir, summary, records, comparison, night_id, rate, wall)


def _record(o: CellOutcome) -> CellRecord:
    if o.run_dir is None:
        parts = o.cell.parts
        reason = "the cell ended before it wrote any result" + (" (cell timeout)" if o.timed_out else "")
        return CellRecord(cell=o.cell.id, **parts, verdict=Verdict.ERROR, observed=Verdict.ERROR, reason=reason,
                          seconds=round(o.seconds, 3), run_dir="", report="")
    return CellRecord.from_run(o.cell.id, o.cell.parts, o.run_dir)


def _exports(night_dir: Path, matrix: Matrix, records: dict[str, CellRecord]) -> None:
    from .exports import write_exports

    write_exports(night_dir, matrix.name, list(records.values()), run_name=night_dir.name)


def write_night_summary(night_dir: Path, matrix: Matrix, records: dict[str, CellRecord],
                        comparison: Comparison | None, history: History | None, wall: float,
                        parallel: int) -> Path:
    rows = sorted({(r.kernel, r.arch, r.patchset) for r in records.values()})
    machines_ = list(dict.fromkeys(c.machine for c in matrix.cells))
    flows = list(dict.fromkeys(c.flow for c in matrix.cells))
    change: dict[str, str] = {}
    if comparison:
        for label, ids in (("regression", comparison.regressions), ("fixed", comparison.fixes),
                           ("new", comparison.new_cells)):
            for c in ids:
                change[c] = label
    grids = []
    for flow in flows:
        grid_rows = []
        for kernel, arch, patchset in rows:
            cells: list[dict[str, Any] | None] = []
            for mach in machines_:
                cid = f"{kernel}/{arch}/{mach}/{flow}/{patchset}"
                rec = records.get(cid)
                trend = history.trend(matrix.name, cid, TREND_NIGHTS) if history else []
                cells.append(None if rec is None else {
                    "id": cid, "verdict": rec.verdict, "css": verdict_class(rec.verdict),
                    "href": os.path.relpath(rec.report, night_dir) if rec.report else "",
                    "duration": format_duration(rec.seconds), "reason": rec.reason,
                    "change": change.get(cid, ""),
                    "trend": [{"night": n, "verdict": v or "-", "css": verdict_class(v) if v else "none"} for n, v in trend],
                })
            grid_rows.append({"label": f"{kernel} {arch}", "patchset": patchset, "cells": cells})
        grids.append({"flow": flow, "machines": machines_, "rows": grid_rows})
    counts: dict[str, int] = {}
    for r in records.values():
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    html = environment().get_template("nightly.html.j2").render(
        matrix=matrix.name, description=matrix.description, night=night_dir.name, grids=grids,
        counts=sorted(counts.items()), comparison=comparison,
        changes=comparison.lines() if comparison else [],
        wall=format_duration(wall), parallel=parallel, n=len(records),
        rate=f"{len(records) / wall * 3600:.0f}" if wall else "-",
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    path = night_dir / "summary.html"
    path.write_text(html)
    return path
