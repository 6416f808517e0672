"""`kjlab matrix` and `kjlab nightly`: run a matrix, record every cell in the history,
compare with the previous night, and write the summary page (a grid of kernels x
machines per flow, coloured by verdict, linking every cell's report, with durations and
each cell's trend over the last nights, with the kernel's version each night) and the CI
exports (JUnit XML, KCIDB JSON).

The cells run on an executor (lab.executors: this machine, or the workers of a Dask
cluster); whichever ran them, each cell goes into the history as it ends, and a night
that did not complete can be resumed (its recorded cells are not run again). A night stopped by SIGINT/SIGTERM (during the
builds or the cells) still writes its summary and exports for what ran, records the
cells that were running as INTERRUPTED, and is marked interrupted in the history."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .cell import cell_id
from .compare import night_ratios
from .errors import UserError
from .executors import Build, Executor
from .executors.local import LocalExecutor, kjlab_run_argv_late, prebuild_late
from .history import CellRecord, Comparison, History, NightStatus, compare
from .matrix import Matrix
from .matrix_run import GRACE_SECONDS, CellArgv, CellOutcome, write_cell_files
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
    interrupted: bool = False  # stopped by SIGINT/SIGTERM: records hold what ran

    @property
    def status(self) -> NightStatus:
        return NightStatus.INTERRUPTED if self.interrupted else NightStatus.COMPLETED


def new_night_dir(runs_root: Path, matrix: Matrix, kind: str) -> Path:
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{matrix.name}"
    runs_root.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):  # atomic: two nights started in the same second get two
        path = runs_root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def run_night(matrix: Matrix, runs_root: Path, *, record: bool, history_path: Path | None = None,
              parallel: int | None = None, on_done: Callable[[CellRecord], None] | None = None,
              keep: str = "failed", build: Build | None = None, cell_argv: CellArgv | None = None,
              grace: float = GRACE_SECONDS, executor: Executor | None = None, resume: bool = False) -> NightOutcome:
    """Run every cell; with `record`, keep the night in the history (each cell as it
    ends) and compare it. The cells run on `executor` (default: this machine,
    lab.executors.local, where `build` and `cell_argv` replace the shared builds and the
    cell command, e.g. with fakes in tests). With `resume`, the latest night of the
    matrix that did not complete carries on: its recorded cells (but INTERRUPTED ones)
    are kept, not run again, and the rest run into the same night directory."""
    if executor is None:
        executor = LocalExecutor(parallel or matrix.parallel, build or prebuild_late, cell_argv or kjlab_run_argv_late, grace)
    t0 = time.monotonic()
    history = History(history_path) if record else None
    resumed = history.unfinished_night(matrix.name) if history and resume else None
    records: dict[str, CellRecord] = {}
    night_id: int | None = None
    if history and resumed is not None:
        night_dir, night_id = runs_root / resumed.name, resumed.id
        if not night_dir.is_dir():
            history.close()
            raise UserError(f"cannot resume night {resumed.name}: no directory {night_dir} (another --runs-dir?)")
        history.reopen_night(night_id)
        records = {c: r for c, r in history.cells(night_id).items() if r.verdict != Verdict.INTERRUPTED}
        log.info("resuming night %s: %d of %d cells recorded already", resumed.name, len(records), len(matrix.cells))
    else:
        if resume:
            log.info("no unfinished night of %s to resume: a new night", matrix.name)
        night_dir = new_night_dir(runs_root, matrix, "nightly" if record else "matrix")
        night_id = history.start_night(night_dir.name, matrix.name) if history else None
    files = write_cell_files(matrix, night_dir)
    to_run = replace(matrix, cells=[c for c in matrix.cells if c.id not in records])
    status = NightStatus.FAILED  # until the night gets to its end

    def cell_done(o: CellOutcome) -> None:
        rec = records[o.cell.id] = _record(o)
        if history and night_id is not None:
            history.record_cell(night_id, rec)  # at once: a night stopped later keeps it
        if on_done:
            on_done(rec)

    try:
        cells = executor.run(to_run, {c.id: files[c.id] for c in to_run.cells}, night_dir, cell_done, keep)
        interrupted = cells.interrupted
        wall = time.monotonic() - t0
        comparison = None
        if history and night_id is not None:
            prev = history.previous_night(matrix.name, night_id)
            comparison = _compare(history.cells(prev) if prev else {}, records, interrupted)
        ended = NightStatus.INTERRUPTED if interrupted else NightStatus.COMPLETED
        summary = write_night_summary(night_dir, matrix, records, comparison, history, wall, executor.slots, ended)
        _exports(night_dir, matrix, records, comparison)
        status = ended
    except KeyboardInterrupt:  # a signal while the summary was written (outside the cells)
        status = NightStatus.INTERRUPTED
        raise
    finally:
        if history:
            if night_id is not None:
                summary_path = night_dir / "summary.html"
                history.finish_night(night_id, summary_path if summary_path.is_file() else None, status=status)
            history.close()
    ran = len(to_run.cells)
    rate = ran / wall * 3600 if wall else 0.0
    return NightOutcome(night_dir, summary, records, comparison, night_id, rate, wall, interrupted)


def _compare(previous: dict[str, CellRecord], current: dict[str, CellRecord], interrupted: bool) -> Comparison:
    """The night against the previous one; a stopped night only on the cells that ended
    by themselves (the others would show as gone or, INTERRUPTED, as regressions)."""
    if interrupted:
        current = {c: r for c, r in current.items() if r.verdict != Verdict.INTERRUPTED}
        previous = {c: r for c, r in previous.items() if c in current}
    return compare(previous, current)


def _record(o: CellOutcome) -> CellRecord:
    parts = o.cell.parts
    expected = str(o.cell.scenario.get("expect", {}).get("verdict", Verdict.PASS))
    if o.run_dir is None:
        if o.not_run:
            reason = o.not_run
        elif o.interrupted:
            reason = "the matrix was stopped before the cell wrote any result"
        else:
            reason = "the cell ended before it wrote any result" + (" (cell timeout)" if o.timed_out else "")
        verdict = Verdict.INTERRUPTED if o.interrupted else Verdict.ERROR
        c = o.cell
        return CellRecord(cell=c.id, kernel=c.kernel, arch=c.arch, machine=c.machine, flow=c.flow,
                          patchset=c.patchset, verdict=verdict, observed=verdict, expected=expected,
                          reason=reason, seconds=round(o.seconds, 3))
    rec = CellRecord.from_run(o.cell.id, parts, o.run_dir)
    if o.interrupted:  # whatever the run made of being stopped, the night stopped it
        rec.reason = f"the matrix was stopped while the cell ran (the run's record: {rec.verdict}: {rec.reason})"
        rec.verdict = Verdict.INTERRUPTED
    elif o.timed_out:  # the lab ended it: no verdict on the kernel
        rec.reason = (f"cell timeout: ended after {o.seconds:.0f} s (the run's record: {rec.verdict}: "
                      f"{rec.reason})")
        rec.verdict = Verdict.ERROR
    return rec


def _exports(night_dir: Path, matrix: Matrix, records: dict[str, CellRecord], comparison: Comparison | None) -> None:
    from .exports import write_exports

    write_exports(night_dir, matrix.name, list(records.values()), comparison=comparison, run_name=night_dir.name)


def write_night_summary(night_dir: Path, matrix: Matrix, records: dict[str, CellRecord],
                        comparison: Comparison | None, history: History | None, wall: float,
                        parallel: int, status: NightStatus = NightStatus.COMPLETED) -> Path:
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
        flow_machines = [m for m in machines_ if any(c.flow == flow and c.machine == m for c in matrix.cells)]
        grid_rows = []
        for kernel, arch, patchset in rows:
            cells: list[dict[str, Any] | None] = []
            for mach in flow_machines:
                cid = cell_id(kernel, arch, mach, flow, patchset)
                rec = records.get(cid)
                version = comparison.version_change(cid) if comparison else None
                cells.append(None if rec is None else {
                    "id": cid, "verdict": rec.verdict, "css": verdict_class(rec.verdict),
                    "href": os.path.relpath(rec.report, night_dir) if rec.report else "",
                    "duration": format_duration(rec.seconds), "reason": rec.reason,
                    "change": change.get(cid, ""), "version_change": str(version) if version else "",
                    "trend": _trend(history, matrix.name, cid) if history else [],
                })
            versions = sorted({r.source_version for r in records.values()
                               if (r.kernel, r.arch, r.patchset) == (kernel, arch, patchset) and r.source_version})
            grid_rows.append({"label": f"{kernel} {arch}", "patchset": patchset, "cells": cells,
                              "versions": ", ".join(versions)})
        grids.append({"flow": flow, "machines": flow_machines, "rows": grid_rows})
    ratios = night_ratios(records, (lambda cid: history.figures_trend(matrix.name, cid, TREND_NIGHTS))
                          if history else (lambda cid: []))
    counts: dict[str, int] = {}
    for r in records.values():
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    html = environment().get_template("nightly.html.j2").render(
        matrix=matrix.name, description=matrix.description, night=night_dir.name, grids=grids,
        counts=sorted(counts.items()), comparison=comparison, ratios=ratios,
        changes=comparison.lines() if comparison else [],
        wall=format_duration(wall), parallel=parallel, n=len(records),
        rate=f"{len(records) / wall * 3600:.0f}" if wall else "-",
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        status="" if status == NightStatus.COMPLETED else
        f"night {status}: {len(records)} of {len(matrix.cells)} cells recorded",
    )
    path = night_dir / "summary.html"
    path.write_text(html)
    return path


def _trend(history: History, matrix: str, cell: str) -> list[dict[str, Any]]:
    """The cell's verdict and kernel version over the last nights, oldest first; a night
    whose version differs from the one before it (both known) is marked."""
    out: list[dict[str, Any]] = []
    last_version = ""
    for (night, verdict), (_, version) in zip(history.trend(matrix, cell, TREND_NIGHTS),
                                              history.versions_trend(matrix, cell, TREND_NIGHTS)):
        version = version or ""
        out.append({"night": night, "verdict": verdict or "-", "css": verdict_class(verdict) if verdict else "none",
                    "version": version, "version_changed": bool(last_version and version and version != last_version)})
        last_version = version or last_version
    return out
