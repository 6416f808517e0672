"""Evidence lines linked to where they came from: a console line, a step, a log, the Memory section."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.evidence import clean
from lab.expectation import LATER_EVIDENCE
from lab.flows.base import FROM_MEMORY
from lab.results import RunResult, Step

from .anchors import console_line_id, section_id
from .console import ConsoleLog, console_log_name, step_lines
from .format import clean_text
from .view import EvidenceView, StepView

_HEADER_RE = re.compile(r"^-- .* --$")
_PAGES_RE = re.compile(r"\bpages?\b|\bCRC-32\b|\bsentinel", re.IGNORECASE)


@dataclass
class ConsoleTarget:
    """The console log line an evidence line was found on."""

    log: str  # console log name
    line: int


def _match_console(lines: list[str], logs: dict[str, ConsoleLog], step: Step | None) -> list[ConsoleTarget | None]:
    """Where each of a run of console evidence lines is in the console logs. The lines are
    the last ones before a point (the end of the failed step): matched backwards from the
    end of `step`'s slice, each before the next; failing that, the last match in the step's
    log, then in any log."""
    home = logs.get(console_log_name(step.vm) or "") if step is not None else None
    bound = step_lines(step, home)[1] if step is not None and home is not None else None
    found: list[ConsoleTarget | None] = [None] * len(lines)
    for i in range(len(lines) - 1, -1, -1):
        key = clean(lines[i]).rstrip()
        if not key.strip():
            continue
        target = None
        if home is not None:
            numbers = home.index.get(key, [])
            before = [n for n in numbers if bound is None or n <= bound]
            if before or numbers:
                target = ConsoleTarget(home.name, (before or numbers)[-1])
        if target is None:
            others = [ConsoleTarget(lg.name, lg.index[key][-1]) for lg in logs.values() if lg is not home and key in lg.index]
            target = others[-1] if others else None
        if target is not None:
            found[i] = target
            if home is not None and target.log == home.name:
                bound = target.line - 1
    return found


def link_evidence(evidence: list[str], result: RunResult, logs: dict[str, ConsoleLog], anchors: dict[str, str],
                  log_files: set[str], has_memory: bool) -> tuple[list[EvidenceView], list[ConsoleTarget | None]]:
    """Each evidence line with where it came from: a console log line (its target, checked
    against the rendered anchors by the caller), the step a "-- then, at STEP" line names,
    the QMP log or cpu_reset log in the Logs section, the Memory section; else plain."""
    steps = {s.name: s for s in result.steps}
    context = steps.get(result.failed_step)
    views: list[EvidenceView] = []
    targets: list[ConsoleTarget | None] = [None] * len(evidence)
    mode = "console"
    block: list[int] = []  # indexes of the current run of console lines

    def flush() -> None:
        if block:
            for i, t in zip(block, _match_console([evidence[i] for i in block], logs, context)):
                targets[i] = t
            block.clear()

    # a kernel log read from memory: its heading names its snapshot (lab.flows.base.judge_with_memory_log)
    memory_logs = {str(k.get("snapshot", "")): f"kernel-log-{n}" for n, k in enumerate(result.kernel_logs)}
    memory_log: str | None = None

    def cpu_reset_log() -> str | None:
        name = f"cpu-reset-{context.vm}.log" if context is not None and context.vm else None
        return name if name in log_files else None

    for i, line in enumerate(evidence):
        text = clean_text(line)
        view = EvidenceView(text, None, "")
        if _HEADER_RE.match(line.strip()):
            flush()
            if line.startswith(LATER_EVIDENCE):
                later = line[len(LATER_EVIDENCE):].split(":", 1)[0].strip()
                context = steps.get(later, context)
                if later in anchors:
                    view = EvidenceView(text, "#" + anchors[later], f"step {later}")
                mode = "console"
            elif FROM_MEMORY in line:
                mode = "memory_log"
                memory_log = next((a for snap, a in memory_logs.items() if snap and f"({snap})" in line), None)
                if memory_log is not None:
                    view = EvidenceView(text, "#" + memory_log, "the kernel log read from memory")
            elif "cpu_reset" in line:
                mode = "cpu_reset"
                if (name := cpu_reset_log()) is not None:
                    view = EvidenceView(text, "#" + section_id(name), name)
            else:
                mode = "console"
        elif line.startswith("QMP event"):
            if "qmp.log" in log_files:
                view = EvidenceView(text, "#" + section_id("qmp.log"), "qmp.log")
        elif mode == "cpu_reset":
            if (name := cpu_reset_log()) is not None:
                view = EvidenceView(text, "#" + section_id(name), name)
        elif mode == "memory_log":
            if memory_log is not None:
                view = EvidenceView(text, "#" + memory_log, "the kernel log read from memory")
        else:
            block.append(i)
        views.append(view)
    flush()
    for i, view in enumerate(views):
        if targets[i] is None and view.href is None and has_memory and _PAGES_RE.search(view.text):
            views[i] = EvidenceView(view.text, "#memory", "the Memory section")
    return views, targets


def anchor_evidence(evidence: list[EvidenceView], targets: list[ConsoleTarget | None], steps: list[StepView],
                    shown_ids: set[str]) -> None:
    """Point each console evidence line at its line in a step's excerpt when that line is
    shown (else say where it is), mark those lines and open their steps."""
    hit: set[str] = set()
    for i, t in enumerate(targets):
        if t is None:
            continue
        line_id = console_line_id(t.log, t.line)
        if line_id in shown_ids:
            evidence[i] = EvidenceView(evidence[i].text, "#" + line_id, f"{t.log} line {t.line}")
            hit.add(line_id)
        else:
            evidence[i] = EvidenceView(evidence[i].text, None, f"{t.log} line {t.line} (not in a step's excerpt)")
    for sv in steps:
        for row in sv.excerpt.rows:
            row.evidence = row.id in hit
        # a link into a closed <details> would land on nothing visible
        sv.open = sv.open or any(row.evidence for row in sv.excerpt.rows)
