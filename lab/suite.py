"""Many scenarios in one command (a directory of them, e.g. the bug library), each in
its own run directory, and a summary page that links every run's report."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UserError
from .verdict import Verdict
from .report import environment, format_duration, verdict_class
from .results import Step, load
from .runner import RunOutcome, run_scenario
from .scenario import Scenario, load_scenario

log = logging.getLogger(__name__)


@dataclass
class SuiteEntry:
    scenario: str
    path: str
    description: str
    source: str
    expected: str
    observed: str
    verdict: str
    reason: str
    failed_step: str
    seconds: float
    report: str  # relative to the suite directory

    @property
    def ok(self) -> bool:
        return Verdict.parse(self.verdict).good


def scenario_files(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise UserError(f"{target}: no such scenario file or directory")
    files = sorted(p for p in target.rglob("*.toml") if not p.name.endswith(".matrix.toml"))
    if not files:
        raise UserError(f"{target}: no scenario files (*.toml) in it")
    return files


def run_suite(target: Path, runs_root: Path, on_step: Callable[[Step], None] | None = None,
              on_scenario: Callable[[Scenario, int, int], None] | None = None,
              on_done: Callable[[SuiteEntry], None] | None = None, keep: str = "all") -> tuple[Path, list[SuiteEntry]]:
    scenarios = [load_scenario(p) for p in scenario_files(target)]  # all validated before any runs
    suite_dir = runs_root / f"{time.strftime('%Y%m%d-%H%M%S')}-suite-{target.name or 'scenarios'}"
    suite_dir.mkdir(parents=True)
    entries: list[SuiteEntry] = []
    for i, sc in enumerate(scenarios, 1):
        if on_scenario:
            on_scenario(sc, i, len(scenarios))
        try:
            outcome = run_scenario(sc, suite_dir, on_step=on_step, keep=keep)
        except KeyboardInterrupt:  # SIGINT/SIGTERM ends the suite; its summary says where
            cut = _interrupted_entry(sc, suite_dir, entries)
            write_summary(suite_dir, entries + cut, str(target), not_run=[s.name for s in scenarios[i:]])
            raise
        entries.append(_entry(sc, outcome, suite_dir))
        if on_done:
            on_done(entries[-1])
        write_summary(suite_dir, entries, str(target))
    return suite_dir, entries


def _interrupted_entry(sc: Scenario, suite_dir: Path, entries: list[SuiteEntry]) -> list[SuiteEntry]:
    """The entry of the scenario a signal stopped, from the record its run left (run_scenario
    writes it before the interrupt leaves); none if it stopped before its run directory."""
    seen = {Path(e.report).parent.name for e in entries}
    runs = [d for d in suite_dir.iterdir() if d.is_dir() and d.name not in seen and (d / "results.json").is_file()]
    if not runs:
        return []
    run_dir = max(runs, key=lambda d: d.stat().st_mtime)
    try:
        result = load(run_dir)
    except (OSError, ValueError) as e:
        log.warning("%s: the interrupted run's record cannot be read: %s", run_dir, e)
        return []
    return [_entry(sc, RunOutcome(result, run_dir, run_dir / "report.html"), suite_dir)]


def _entry(sc: Scenario, outcome: RunOutcome, suite_dir: Path) -> SuiteEntry:
    res = outcome.result
    return SuiteEntry(
        scenario=sc.name, path=str(sc.path), description=sc.description, source=sc.source,
        expected=res.expected_verdict, observed=res.observed_verdict or res.verdict, verdict=res.verdict,
        reason=res.reason, failed_step=res.failed_step, seconds=(res.ended or time.time()) - res.started,
        report=os.path.relpath(outcome.run_dir / "report.html", suite_dir),
    )


def write_summary(suite_dir: Path, entries: list[SuiteEntry], title: str, not_run: list[str] | None = None) -> Path:
    """summary.json and summary.html; `not_run`: the scenarios an interrupt left out
    (None: the suite was not interrupted)."""
    (suite_dir / "summary.json").write_text(json.dumps([asdict(e) for e in entries], indent=2) + "\n")
    rows = [{**asdict(e), "css": verdict_class(e.verdict), "duration": format_duration(e.seconds)} for e in entries]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.verdict] = counts.get(e.verdict, 0) + 1
    html = environment().get_template("summary.html.j2").render(
        title=title, rows=rows, counts=sorted(counts.items()), ok=all(e.ok for e in entries) and not_run is None,
        interrupted=not_run is not None, not_run=not_run or [],
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    path = suite_dir / "summary.html"
    path.write_text(html)
    return path
