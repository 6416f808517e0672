"""`kjlab run SCENARIO --repeat N`: one scenario N times, `parallel` runs at once, and
what N runs say about a failure rate.

A flaky failure is measured by repeating its scenario under a known load; `--parallel 2`
on a two-core machine is two TCG guests competing for the cores. The runs are the cells
of a matrix of their own (lab.matrix_run: the kernel built once, each run a subprocess
with its own run directory, a cell timeout, a clean stop on SIGINT/SIGTERM, the summary
page and the exports), named ``<scenario>/<arch>/<machine>/<flow>/run-NNN``.

The summary (`repeat.txt`, `repeat.json` in the night directory) counts the verdicts and
gives the one-sided 95% upper confidence bound of the failure rate (Clopper-Pearson,
exact): with 0 failures in N runs it is 1 - 0.05^(1/N), about 3/N (the "rule of three").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cell import cell_id
from .errors import UserError
from .executors import Build
from .history import CellRecord, is_good
from .matrix import Cell, Matrix
from .matrix_run import CellArgv
from .nightly import run_night
from .scenario import load_scenario, read_toml
from .verdict import Verdict

MAX_REPEAT = 10000
DEFAULT_CELL_TIMEOUT = 1800.0
CONFIDENCE = 0.95


def upper_bound(failures: int, runs: int, confidence: float = CONFIDENCE) -> float:
    """The exact (Clopper-Pearson) one-sided upper confidence bound of a failure rate
    after `failures` in `runs`: the p at which P(X <= failures | runs, p) = 1 - confidence."""
    if runs <= 0:
        return 1.0
    if failures >= runs:
        return 1.0
    alpha = 1.0 - confidence
    if failures == 0:
        return 1.0 - float(alpha ** (1.0 / runs))

    def cdf(p: float) -> float:
        return sum(math.comb(runs, k) * p ** k * (1.0 - p) ** (runs - k) for k in range(failures + 1))

    lo, hi = failures / runs, 1.0
    for _ in range(100):  # cdf falls as p grows
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass
class RepeatSummary:
    scenario: str
    scenario_path: str
    runs: int  # runs that ended with a verdict of their own (not INTERRUPTED)
    parallel: int
    failures: int  # runs whose verdict is not good (lab.verdict.is_good)
    verdicts: dict[str, int]
    wall_seconds: float
    run_seconds: list[float]
    failed: list[dict[str, str]] = field(default_factory=list)  # run, verdict, step, reason, run_dir
    jumps: int = 0  # kexec jumps from A to B the ended runs made (a cycles run makes N)
    jump_failures: int = 0  # runs whose jump-to-B failed (an expected failure there included)
    expected: str = "PASS"  # the scenario's expected verdict: a known bug's, or PASS
    shown: int = 0  # runs in which the known bug showed as expected (XFAIL)
    interrupted: bool = False
    night_dir: str = ""
    summary_page: str = ""

    @property
    def rate_upper_bound(self) -> float:
        return upper_bound(self.failures, self.runs)

    def lines(self) -> list[str]:
        secs = sorted(self.run_seconds)
        median = secs[len(secs) // 2] if secs else 0.0
        out = [
            f"scenario {self.scenario} ({self.scenario_path})",
            f"{self.runs} runs, {self.parallel} at once, {self.failures} failed; "
            f"wall {self.wall_seconds:.0f} s, a run {median:.1f} s median"
            + (f" ({secs[0]:.1f}-{secs[-1]:.1f} s)" if secs else ""),
            "verdicts: " + ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts.items())),
        ]
        if self.expected != "PASS":  # a known bug: how often it showed, and what else happened
            out.append(f"the expected failure ({self.expected}) showed in {self.shown} of {self.runs} runs")
        out += [
            f"{'failure rate' if self.expected == 'PASS' else 'runs not as expected'}: {self.failures}/{self.runs}"
            + (f" = {self.failures / self.runs:.3f}" if self.runs else "")
            + f"; one-sided {CONFIDENCE:.0%} upper bound {self.rate_upper_bound:.3f} (Clopper-Pearson"
            + (f"; rule of three 3/N = {3 / self.runs:.3f})" if self.failures == 0 and self.runs else ")"),
        ]
        if self.jumps:
            out.append(f"jumps from A to B: {self.jumps} made, {self.jump_failures} failed"
                       + (f" ({self.shown} of them the expected failure)" if self.shown else "")
                       + f"; one-sided {CONFIDENCE:.0%} upper bound per jump "
                       f"{upper_bound(self.jump_failures, self.jumps):.3f}")
        for f in self.failed:
            out.append(f"  {f['run']}: {f['verdict']} at {f['step'] or '-'}: {f['reason']} ({f['run_dir']})")
        if self.interrupted:
            out.append("interrupted: the counts hold the runs that ended before the stop")
        return out


def repeat_matrix(scenario_file: Path, n: int, parallel: int, cell_timeout: float = DEFAULT_CELL_TIMEOUT) -> Matrix:
    """A matrix of N cells, each the scenario file unchanged (its content as the cell's scenario)."""
    if not 1 <= n <= MAX_REPEAT:
        raise UserError(f"--repeat {n}: must be 1 to {MAX_REPEAT}")
    if parallel < 1:
        raise UserError(f"--parallel {parallel}: must be 1 or more")
    sc = load_scenario(scenario_file)  # validated: a bad file is refused before anything runs
    content = read_toml(scenario_file, "scenario")
    width = len(str(n))
    cells = []
    for i in range(1, n + 1):
        run = f"run-{i:0{width}d}"
        cells.append(Cell(cell_id(sc.name, sc.kernel.arch, sc.machine.name, sc.flow.name, run), sc.name,
                          sc.kernel.arch, sc.machine.name, sc.flow.name, run, content))
    return Matrix(scenario_file, f"repeat-{sc.name}", f"{sc.name} {n} times, {parallel} at once", parallel,
                  cell_timeout, cells)


def run_repeat(scenario_file: Path, n: int, runs_root: Path, *, parallel: int = 1, keep: str = "failed",
               on_done: Callable[[CellRecord], None] | None = None, cell_argv: CellArgv | None = None,
               build: Build | None = None, cell_timeout: float = DEFAULT_CELL_TIMEOUT) -> RepeatSummary:
    """Run the scenario N times, `parallel` at once; write repeat.txt and repeat.json into
    the night directory and return the summary. `build` and `cell_argv` replace the
    shared builds and the run command (tests: fakes without QEMU)."""
    matrix = repeat_matrix(scenario_file, n, parallel, cell_timeout)
    t0 = time.monotonic()
    night = run_night(matrix, runs_root, record=False, parallel=parallel, on_done=on_done, keep=keep,
                      build=build, cell_argv=cell_argv)
    ended = [r for r in night.records.values() if r.verdict != "INTERRUPTED"]
    verdicts: dict[str, int] = {}
    for r in ended:
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    bad = sorted((r for r in ended if not is_good(r.verdict)), key=lambda r: r.patchset)
    summary = RepeatSummary(
        scenario=matrix.cells[0].kernel, scenario_path=str(scenario_file), runs=len(ended), parallel=parallel,
        failures=len(bad), verdicts=verdicts, wall_seconds=round(time.monotonic() - t0, 1),
        run_seconds=[r.seconds for r in ended],
        jumps=int(sum(r.figures.get("jumps_to_b", 0) for r in ended)),
        jump_failures=sum(1 for r in ended if r.failed_step.startswith("jump-to-B")),
        expected=ended[0].expected if ended else "PASS", shown=verdicts.get(Verdict.XFAIL.value, 0),
        failed=[{"run": r.patchset, "verdict": r.verdict, "step": r.failed_step, "reason": r.reason.splitlines()[0]
                 if r.reason else "", "run_dir": r.run_dir} for r in bad],
        interrupted=night.interrupted, night_dir=str(night.night_dir), summary_page=str(night.summary))
    (night.night_dir / "repeat.txt").write_text("\n".join(summary.lines()) + "\n")
    (night.night_dir / "repeat.json").write_text(
        json.dumps({**asdict(summary), "rate_upper_bound_95": summary.rate_upper_bound,
                    "jump_rate_upper_bound_95": upper_bound(summary.jump_failures, summary.jumps)}, indent=1) + "\n")
    return summary
