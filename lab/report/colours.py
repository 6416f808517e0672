"""The report's colours: one CSS class per verdict class and step outcome."""

from __future__ import annotations

from dataclasses import dataclass

from lab.verdict import Verdict


@dataclass(frozen=True)
class Colour:
    """One CSS class `c-<name>` of the report: background and text colour."""

    name: str
    bg: str
    fg: str


PALETTE: tuple[Colour, ...] = (
    Colour("pass", "#1a7f37", "#ffffff"),
    Colour("fail", "#cf222e", "#ffffff"),
    Colour("error", "#6e7781", "#ffffff"),
    Colour("interrupted", "#e16f24", "#ffffff"),
    Colour("xfail", "#3b6fb6", "#ffffff"),
    Colour("xpass", "#8250df", "#ffffff"),
    Colour("running", "#bf8700", "#ffffff"),
    Colour("skipped", "#afb8c1", "#24292f"),
)

_OUTCOMES: dict[str, str] = {
    "ok": "pass",
    "failed": "fail",
    "skipped": "skipped",
    "interrupted": "interrupted",
    "running": "running",
}


def verdict_class(verdict: str) -> str:
    """The colour class of a verdict (an unknown name reads as a lab error)."""
    return Verdict.parse(verdict).css


def outcome_class(outcome: str) -> str:
    return _OUTCOMES.get(outcome, "error")
