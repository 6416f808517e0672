"""The report's steps list: each step with its commands and its console excerpt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.results import RunResult, Step

from .colours import outcome_class
from .console import ConsoleLog, console_log_name, step_excerpt, step_lines
from .evidence_links import ConsoleTarget
from .format import clean_text, earlier_note, format_duration, last_lines
from .view import CommandView, Excerpt, StepView

OUTPUT_LINES = 200  # command output lines shown per command


def command_views(step: Step) -> list[CommandView]:
    """A step's commands, each with the last OUTPUT_LINES lines of its output."""
    views = []
    for c in step.commands:
        output, earlier = last_lines(clean_text(c.output), OUTPUT_LINES)
        if c.status is None:
            status, css = "no status", "error"  # timed out, or the console went away
        else:
            status, css = str(c.status), "pass" if c.status == 0 else "fail"
        views.append(
            CommandView(clean_text(c.command), status, css, format_duration(c.seconds), output, earlier_note(earlier))
        )
    return views


def step_views(run_dir: Path, result: RunResult, anchors: list[str], logs: dict[str, ConsoleLog],
               targets: Sequence[ConsoleTarget | None], end_of_run: float) -> tuple[list[StepView], set[str]]:
    """The steps with their excerpts, each shown from the earliest evidence line in it, and
    the ids of the console lines the excerpts anchor."""
    steps = []
    shown_ids: set[str] = set()
    for i, (s, anchor) in enumerate(zip(result.steps, anchors)):
        ex = step_excerpt(run_dir, s, _first_evidence_line(s, logs, targets))
        _anchor_once(ex, shown_ids)
        steps.append(_step_view(i, anchor, s, ex, result, end_of_run))
    return steps, shown_ids


def _first_evidence_line(step: Step, logs: dict[str, ConsoleLog], targets: Sequence[ConsoleTarget | None]) -> int | None:
    """The first line of the step's console slice that an evidence line points at."""
    log_name = console_log_name(step.vm)
    if log_name is None or log_name not in logs:
        return None
    lo, hi = step_lines(step, logs[log_name])
    wanted = [t.line for t in targets if t is not None and t.log == log_name and lo <= t.line <= hi]
    return min(wanted, default=None)


def _anchor_once(ex: Excerpt, shown_ids: set[str]) -> None:
    """A line split between two steps is anchored once, in the first."""
    for row in ex.rows:
        if row.id in shown_ids:
            row.id = None
        elif row.id is not None:
            shown_ids.add(row.id)


def _step_duration(s: Step, end_of_run: float) -> str:
    """How long the step ran; "≥ ..." for a step still running or interrupted when the run ended."""
    end = s.ended if s.ended is not None else (end_of_run if s.outcome in ("running", "interrupted") else None)
    duration = format_duration(end - s.started if end is not None else None)
    if s.ended is None and end is not None:
        duration = "≥ " + duration
    return duration


def _step_view(index: int, anchor: str, s: Step, ex: Excerpt, result: RunResult, end_of_run: float) -> StepView:
    is_failed = s.name == result.failed_step and bool(s.name)
    return StepView(
        index=index,
        anchor=anchor,
        name=s.name,
        title=s.title,
        seed_step=s.seed_step,
        vm=s.vm or "—",
        start="+" + format_duration(s.started - result.started),
        duration=_step_duration(s, end_of_run),
        outcome=s.outcome,
        css=outcome_class(s.outcome),
        message=s.message,
        commands=command_views(s),
        excerpt=ex,
        is_failed_step=is_failed,
        open=is_failed or s.outcome in ("failed", "interrupted"),
    )
