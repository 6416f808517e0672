"""The report's view model of a run directory, from results.json and the logs.

A run interrupted early may lack any of the logs; the view then says so instead of failing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lab.results import RunResult, load
from lab.verdict import Verdict

from .anchors import step_anchor
from .console import ConsoleLog, console_log_name
from .evidence_links import anchor_evidence, link_evidence
from .files import artifact_links, log_links, snapshot_views
from .format import date_view, format_duration, format_time
from .kernel_logs import kernel_log_views
from .memory import memory_view
from .provenance import provenance_rows
from .reproduce import reproduce_view
from .steps import step_views
from .timeline import run_end, timeline_view
from .view import CheckView, QuirkView, ReportView, VerdictView

log = logging.getLogger("lab.report")  # the package's logger, as before the split into modules


def build_view(run_dir: Path) -> ReportView:
    """The view model of a run directory (reads results.json and the console logs)."""
    run_dir = Path(run_dir)
    result = load(run_dir)
    end_of_run = run_end(run_dir, result)
    anchors = [step_anchor(i, s.name) for i, s in enumerate(result.steps)]
    step_anchors = dict(zip((s.name for s in result.steps), anchors))
    logs = _console_logs(run_dir, result)
    links = log_links(run_dir)
    memory = memory_view(result.memory)
    evidence, targets = link_evidence(result.evidence, result, logs, step_anchors, {lk.name for lk in links},
                                      memory is not None)
    steps, shown_ids = step_views(run_dir, result, anchors, logs, targets, end_of_run)
    warnings = _warnings(run_dir, result)
    anchor_evidence(evidence, targets, steps, shown_ids)
    timeline, ticks = timeline_view(result, end_of_run, anchors)
    checks = [CheckView(c.name, c.ok, "ok" if c.ok else "FAILED", "pass" if c.ok else "fail", c.detail)
              for c in result.checks]
    return ReportView(
        page_title=f"{result.verdict} · {result.scenario} · {result.run_id}",
        run_id=result.run_id,
        scenario=result.scenario,
        scenario_path=result.scenario_path,
        flow=result.flow,
        started=date_view(result.started),
        ended=date_view(result.ended),
        duration=format_duration(end_of_run - result.started) + ("" if result.ended is not None else " (no end recorded)"),
        verdict=_verdict_view(result.verdict),
        expected=_verdict_view(result.expected_verdict),
        reason=result.reason,
        failed_step=result.failed_step,
        failed_step_anchor=_failed_step_anchor(result, anchors),
        evidence=evidence,
        reproduce=reproduce_view(result),
        warnings=warnings,
        timeline=timeline,
        ticks=ticks,
        steps=steps,
        checks=checks,
        checks_summary=_checks_summary(result),
        quirks=[QuirkView(k, "on" if v else "off", "pass" if v else "skipped") for k, v in sorted(result.quirks.items())],
        provenance=provenance_rows(result.provenance),
        snapshots=snapshot_views(run_dir, result),
        artifacts=artifact_links(run_dir, result),
        logs=links,
        memory=memory,
        kernel_logs=kernel_log_views(run_dir, result.kernel_logs, step_anchors),
        generated=format_time(time.time()),
    )


def _console_logs(run_dir: Path, result: RunResult) -> dict[str, ConsoleLog]:
    """The console logs of the run's VMs that could be read, by file name."""
    logs: dict[str, ConsoleLog] = {}
    for vm in dict.fromkeys(s.vm for s in result.steps):
        name = console_log_name(vm)
        if name and (log_file := ConsoleLog.read(run_dir / name)) is not None:
            logs[name] = log_file
    return logs


def _warnings(run_dir: Path, result: RunResult) -> list[str]:
    """What the top of the report warns about: missing console logs, no verdict."""
    warnings: list[str] = []
    for vm in dict.fromkeys(s.vm for s in result.steps):
        name = console_log_name(vm)
        if name and not (run_dir / name).is_file():
            warnings.append(f"{name} is missing: the run may have stopped before the VM started")
            log.warning("%s: %s is missing", run_dir, name)
    if result.verdict == "RUNNING":
        warnings.append("no verdict recorded: the run is still going or was killed hard")
    return warnings


def _failed_step_anchor(result: RunResult, anchors: list[str]) -> str | None:
    """The anchor of the (first) step named as the failed one, if any."""
    return next((a for s, a in zip(result.steps, anchors) if s.name == result.failed_step), None)


def _verdict_view(code: str) -> VerdictView:
    verdict = Verdict.parse(code)
    return VerdictView(code or "—", verdict.css, verdict.meaning if code == verdict else f"unknown verdict ({verdict.meaning})")


def _checks_summary(result: RunResult) -> str:
    """"3 of 4 ok", or that the run recorded no checks."""
    n_ok = sum(c.ok for c in result.checks)
    return f"{n_ok} of {len(result.checks)} ok" if result.checks else "no checks recorded"
