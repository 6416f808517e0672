"""The HTML report of a run: run_dir/report.html, built from results.json and the logs.

Python builds a plain view model (lab.report.view) and decides everything: colours
by verdict class, timeline positions, formatted durations, console excerpts. The
template (reports/templates/report.html.j2) only renders it. Guest output is untrusted:
the template autoescapes it and nothing here ever marks it safe.

The modules, one job each: view (the view model), colours, format, anchors (the page's
ids), console (excerpts, console logs), evidence_links, timeline, steps, files (logs,
snapshots, artifacts), memory, kernel_logs, provenance, reproduce, and build (the whole
view of a run directory). This module renders it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jinja2

import lab

from .. import atomic
from .anchors import console_line_id, section_id, step_anchor
from .build import build_view
from .colours import PALETTE, Colour, outcome_class, verdict_class
from .console import EXCERPT_LINES, EXCERPT_MAX_LINES, ConsoleLog, console_log_name, excerpt, step_excerpt
from .evidence_links import ConsoleTarget, anchor_evidence, link_evidence
from .files import artifact_links, file_link, log_links, snapshot_views
from .format import (MAX_LINE_CHARS, TIME_KEYS, clean_text, date_view, earlier_note, format_duration, format_size,
                     format_time, last_lines)
from .kernel_logs import kernel_log_views
from .memory import MEMORY_COLOURS, memory_view, proof_view
from .provenance import provenance_rows
from .reproduce import reproduce_view
from .steps import OUTPUT_LINES, command_views
from .view import (CheckView, CommandView, ConsoleLine, DateView, EvidenceView, Excerpt, KernelLogView, LinkView,
                   MemoryView, ProofView, ProvenanceRow, QuirkView, ReportView, ReproduceView, SnapshotView, StepView,
                   Tick, TimelineBar, VerdictView)

__all__ = [
    "EXCERPT_LINES", "EXCERPT_MAX_LINES", "MAX_LINE_CHARS", "MEMORY_COLOURS", "OUTPUT_LINES", "PALETTE", "TEMPLATE",
    "TIME_KEYS",
    "CheckView", "Colour", "CommandView", "ConsoleLine", "ConsoleLog", "ConsoleTarget", "DateView", "EvidenceView",
    "Excerpt", "KernelLogView", "LinkView", "MemoryView", "ProofView", "ProvenanceRow", "QuirkView", "ReportView",
    "ReproduceView", "SnapshotView", "StepView", "Tick", "TimelineBar", "VerdictView",
    "anchor_evidence", "artifact_links", "build_view", "clean_text", "command_views", "console_line_id",
    "console_log_name", "date_view", "earlier_note", "environment", "excerpt", "file_link", "format_duration",
    "format_size", "format_time", "kernel_log_views", "last_lines", "link_evidence", "log_links", "memory_view",
    "outcome_class", "proof_view", "provenance_rows", "render_report", "reproduce_view", "section_id",
    "snapshot_views", "step_anchor", "step_excerpt", "verdict_class",
]

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(lab.TEMPLATES_DIR),
        autoescape=True,  # not select_autoescape: "report.html.j2" does not end in .html
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(run_dir: Path) -> Path:
    """Write run_dir/report.html (atomically) and return its path."""
    run_dir = Path(run_dir)
    view = build_view(run_dir)
    html = environment().get_template(TEMPLATE).render(view=view)
    path = atomic.write_text(run_dir / "report.html", html)
    log.info("report: %s", path)
    return path
