"""The report's timeline: one bar per step on the run's time axis, and its ticks."""

from __future__ import annotations

from pathlib import Path

from lab.results import RunResult

from .colours import outcome_class
from .format import format_duration, percent
from .view import Tick, TimelineBar


def run_end(run_dir: Path, result: RunResult) -> float:
    """When the run ended, or the last sign of life of a run that never recorded it."""
    if result.ended is not None:
        return result.ended
    times = [result.started]
    for s in result.steps:
        times.append(s.started)
        if s.ended is not None:
            times.append(s.ended)
    try:
        times.append((run_dir / "results.json").stat().st_mtime)
    except OSError:
        pass
    return max(times)


def _nice_tick(span: float, max_ticks: int = 8) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if span / step <= max_ticks:
            return step
    return span / max_ticks


def timeline_view(result: RunResult, end_of_run: float, anchors: list[str]) -> tuple[list[TimelineBar], list[Tick]]:
    """The bars of the steps (linked to their anchors) and the ticks, from the run's start to `end_of_run`."""
    t0 = result.started
    span = max(end_of_run - t0, 1e-3)
    bars = []
    for step, anchor in zip(result.steps, anchors):
        end = step.ended if step.ended is not None else end_of_run
        left = (step.started - t0) / span * 100
        width = max((end - step.started) / span * 100, 0.4)  # a 10 ms step is still visible
        width = min(width, max(100 - left, 0.4))
        label = f"{step.seed_step} · {step.name}" if step.seed_step else step.name
        tooltip = (
            f"{step.title or step.name}: +{format_duration(step.started - t0)} → "
            f"+{format_duration(end - t0)} ({format_duration(end - step.started)}), {step.outcome}"
        )
        bars.append(TimelineBar(anchor, label, outcome_class(step.outcome), percent(left), percent(width), tooltip))
    ticks = []
    if result.steps:
        every = _nice_tick(span)
        t = 0.0
        while t <= span + 1e-9:
            ticks.append(Tick(percent(t / span * 100), "+" + format_duration(t) if t else "0"))
            t += every
    return bars, ticks
