"""The HTML report of a run: run_dir/report.html, built from results.json and the logs.

Python builds a plain view model (the dataclasses below) and decides everything: colours
by verdict class, timeline positions, formatted durations, console excerpts. The
template (reports/templates/report.html.j2) only renders it. Guest output is untrusted:
the template autoescapes it and nothing here ever marks it safe.

A run interrupted early may lack any of the logs; the report then says so instead of
failing.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

import lab
from lab.console import ANSI_RE
from lab.evidence import clean
from lab.expectation import LATER_EVIDENCE
from lab.results import RunResult, Step, load
from lab.verdict import Verdict

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
EXCERPT_LINES = 60  # console lines shown per step
EXCERPT_MAX_LINES = 400  # ... more when an evidence line earlier in the step must be shown
OUTPUT_LINES = 200  # command output lines shown per command
MAX_LINE_CHARS = 2000  # a guest spewing one endless line must not blow up the page

# -- colours ---------------------------------------------------------------------------


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


# -- the view model --------------------------------------------------------------------


@dataclass
class VerdictView:
    code: str  # "TRIPLE_FAULT"
    css: str  # colour class name, see PALETTE
    meaning: str  # "failure: triple fault (CPU reset)"


@dataclass
class TimelineBar:
    anchor: str  # id of the step in the steps list
    label: str  # "5 · kexec_jump"
    css: str
    left: str  # "12.50%"
    width: str  # "3.20%"
    tooltip: str


@dataclass
class Tick:
    left: str  # "25.00%"
    label: str  # "+30 s"


@dataclass
class ConsoleLine:
    number: int  # 1-based line number in the whole log
    text: str
    id: str | None  # "console-A-B-L123"; None where another excerpt already has that line
    evidence: bool = False  # an evidence line of the verdict links here


@dataclass
class Excerpt:
    text: str | None  # None: nothing to show, see note
    note: str  # "… 123 earlier lines", "console-A-B.log is missing", ...
    source: str  # "console-A-B.log bytes 100–2000"
    lines: int = 0  # lines shown
    href: str | None = None  # link to the whole log
    rows: list[ConsoleLine] = field(default_factory=list)  # the shown lines, one anchor each


@dataclass
class EvidenceView:
    text: str
    href: str | None  # "#console-C-A-L123", "#memory", "#log-qmp-log", "#step-3-jump"; None: plain text
    where: str  # what the link points at: "console-C-A.log line 123", "" for plain text


@dataclass
class DateView:
    text: str  # "2026-12-01 10:06:45+00:00" (ISO 8601, local time with its UTC offset)
    raw: str  # the recorded epoch seconds, for a title attribute


@dataclass
class ReproduceView:
    command: str  # `kjlab run SCENARIO [--kernel-tree TREE]` as the run was given
    one_liner: str  # the same from a kjlab checkout at the run's commit, ready to paste into a shell
    commit: str  # "7f6ec6043cfc", "kjlab 0.1.0 (installed)" or "unknown"
    facts: list[tuple[str, str]]  # kjlab commit, kernel source/version/patches, QEMU, ...
    notes: list[str]  # what the command alone does not bring back (a dirty checkout, a matrix cell)


@dataclass
class CommandView:
    command: str
    status: str  # "0", "1", "—"
    css: str
    seconds: str
    output: str
    note: str  # "… N earlier lines" or ""


@dataclass
class StepView:
    index: int
    anchor: str
    name: str
    title: str
    seed_step: str
    vm: str
    start: str  # "+12.3 s" from the run start
    duration: str
    outcome: str
    css: str
    message: str
    commands: list[CommandView]
    excerpt: Excerpt
    is_failed_step: bool
    open: bool  # expanded by default


@dataclass
class CheckView:
    name: str
    ok: bool
    mark: str  # "ok" / "FAILED"
    css: str
    detail: str


@dataclass
class QuirkView:
    name: str
    state: str  # "on" / "off"
    css: str


@dataclass
class ProvenanceRow:
    key: str
    value: str  # "" for a heading row (a nested dict or list follows, one level deeper)
    depth: int
    heading: bool


@dataclass
class LinkView:
    name: str
    path: str  # as recorded, relative to the run dir
    href: str | None  # None: the file is missing, no link
    size: str  # "12.3 KiB" or "missing"
    anchor: str = ""  # id of its entry in the Logs section ("log-qmp-log"), for the evidence's links


@dataclass
class SnapshotView:
    name: str
    link: LinkView
    extra: list[tuple[str, str, str]]  # the snapshot's other keys: key, formatted value, title (raw value or "")


@dataclass
class KernelLogView:
    """A kernel log read from a memory snapshot (lab.memory.kernel_log), shown whole."""

    anchor: str
    title: str  # "kernel A (6.1.192)"
    source: str  # "read from memory: snapshot-silent-verify-A.elf, after verify-A stopped answering"
    step_anchor: str | None
    text: str | None  # None: the text file is missing, see note
    lines: int
    note: str
    text_link: LinkView
    pages_link: LinkView


@dataclass
class ReportView:
    page_title: str
    run_id: str
    scenario: str
    scenario_path: str
    flow: str
    started: DateView  # "2024-05-01 14:34:56+02:00"
    ended: DateView
    duration: str
    verdict: VerdictView
    expected: VerdictView
    reason: str
    failed_step: str
    failed_step_anchor: str | None
    evidence: list[EvidenceView]
    reproduce: ReproduceView
    warnings: list[str]  # missing logs and the like, shown at the top
    timeline: list[TimelineBar]
    ticks: list[Tick]
    steps: list[StepView]
    checks: list[CheckView]
    checks_summary: str  # "3 of 4 ok"
    quirks: list[QuirkView]
    provenance: list[ProvenanceRow]
    snapshots: list[SnapshotView]
    artifacts: list[LinkView]
    logs: list[LinkView]
    memory: "MemoryView | None" = None
    kernel_logs: list[KernelLogView] = field(default_factory=list)
    palette: tuple[Colour, ...] = PALETTE
    generated: str = ""


MEMORY_COLOURS = {"corrupted": "#cf222e", "changed": "#d4a72c", "sentinel": "#3b6fb6", "proven": "#1a7f37",
                  "b_window": "#8250df", "unchanged": "#7ab88a", "absent": "#eaeef2"}


@dataclass
class MemoryView:
    cells: list[str]  # class per cell; CSS class mc-<class>
    legend: list[tuple[str, str, int]]  # (class, colour, pages)
    total: str
    per_cell: str
    lines: list[tuple[str, str]]  # summary rows: label, text
    proof: "ProofView | None" = None


@dataclass
class ProofView:
    """The exact round-trip proof (lab.memory.roundtrip): a headline, one row per leg, what is left out."""

    proven: bool
    headline: str
    legs: list[tuple[str, str, bool, list[str]]]  # name, summary, holds, differing pages described
    left_out: list[tuple[str, str]]  # range, why


def proof_view(rt: dict[str, Any]) -> ProofView | None:
    if not rt:
        return None
    n = rt.get("pages_in_domain", 0)
    legs = []
    for leg in rt.get("legs", []):
        holds = bool(leg.get("holds"))
        summary = (f"all {leg.get('pages_compared')} pages identical" if holds else
                   f"{leg.get('pages_differing')} of {leg.get('pages_compared')} pages differ")
        legs.append((str(leg.get("name")), summary, holds, [str(x) for x in leg.get("examples", [])]))
    if rt.get("proven"):
        headline = f"{n} pages of A ({format_size(n * 4096)}) proven identical at departure, in B, on the disk and at return"
    else:
        missing = "; ".join(rt.get("missing", []))
        headline = "the round trip is NOT proven" + (f": {missing}" if missing else "")
    left = [(f"{x['range'][0]:#x}-{x['range'][1]:#x} ({x.get('pages')} pages)", str(x.get("why"))) for x in rt.get("left_out", [])]
    return ProofView(bool(rt.get("proven")), headline, legs, left)


def memory_view(memory: dict[str, Any]) -> MemoryView | None:
    """The report's memory section from RunResult.memory (see lab.memory.checks)."""
    mp = memory.get("map")
    if not mp:
        return None
    lines: list[tuple[str, str]] = []
    plan = memory.get("sentinel_plan", {})
    if plan:
        lines.append(("sentinel pages", f"{plan.get('pages_per_region')} per region (tmpfs file, anonymous memory), "
                                          f"run token {plan.get('token')}"))
    image = memory.get("image_check", {})
    if "image_vs_b_snapshot" in image:
        d = image["image_vs_b_snapshot"]
        lines.append(("image vs A's memory in B", f"{d.get('pages_compared')} pages compared, {d.get('pages_differing')} differ"
                      + _range_list(d.get("differing", {}))))
    if image.get("left_out", {}).get("count"):
        lines.append(("left out of the image", f"{image['left_out'].get('bytes', 0) >> 12} pages (zero-filled)"
                      + _range_list(image["left_out"])))
    if "sentinels_in_image" in image:
        lines.append(("sentinels in the image", _sentinel_line(image["sentinels_in_image"], moved_ok=True)))
    resume = memory.get("resume", {})
    if "sentinels_after_resume" in resume:
        lines.append(("sentinels after resume", _sentinel_line(resume["sentinels_after_resume"], moved_ok=False)))
    if "changed" in resume:
        c = resume["changed"]
        lines.append(("guest RAM changed between the two snapshots of A", f"{c.get('pages_differing')} of {c.get('pages_compared')} pages"
                      + _range_list(c.get("differing", {}))))
    counts = mp.get("page_counts", {})
    return MemoryView(
        cells=list(mp["cells"]),
        legend=[(name, MEMORY_COLOURS[name], counts.get(name, 0)) for name in MEMORY_COLOURS],
        total=format_size(int(mp["total_bytes"])),
        per_cell=format_size(int(mp["bytes_per_cell"])),
        lines=lines,
        proof=proof_view(memory.get("round_trip", {})),
    )


def _range_list(ranges: dict[str, Any], limit: int = 8) -> str:
    items = ranges.get("ranges", [])
    if not items:
        return ""
    text = ", ".join(r["range"] for r in items[:limit])
    more = len(items) - limit + ranges.get("omitted", 0)
    return f": {text}" + (f" (+{more} more)" if more > 0 else "")


def _sentinel_line(check: dict[str, Any], moved_ok: bool) -> str:
    parts = [f"{sum(check.get('found_intact', {}).values())}/{sum(check.get('expected', {}).values())} intact"
             + ("" if moved_ok else " in place")]
    kinds = ("missing", "corrupted") + (() if moved_ok else ("moved",))
    for kind in kinds:
        for region, g in check.get(kind, {}).items():
            where = g.get("from_ranges") or g.get("ranges", {})
            parts.append(f"{g.get('count')} {region} {'lost' if kind == 'missing' else kind} "
                         f"(indices {g.get('indices')})" + _range_list(where, 4))
    if moved_ok:
        moved = sum(g.get("count", 0) for g in check.get("moved", {}).values())
        if moved:
            parts.append(f"{moved} at other addresses (B's window lives in kexec's swap pages: expected)")
    return "; ".join(parts)


# -- formatting ------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """Compact and unambiguous: "850 ms", "12.3 s", "2 min 05 s", "1 h 02 min"."""
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min"


def format_time(epoch: float | None) -> str:
    """Epoch seconds as an ISO 8601 local date-time with its UTC offset:
    "2026-12-01 11:06:45+01:00"."""
    if epoch is None or math.isnan(epoch):
        return "—"
    try:
        return datetime.fromtimestamp(epoch, tz=timezone.utc).astimezone().isoformat(sep=" ", timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{epoch:.3f} (not a date)"


def date_view(epoch: float | None) -> DateView:
    return DateView(format_time(epoch), "" if epoch is None else f"epoch {epoch:.6f}")


# Keys whose numbers are times (epoch seconds) wherever they appear in results.json's
# free-form parts (snapshots, provenance): shown as dates.
TIME_KEYS = frozenset({"taken", "started", "ended", "time", "when", "generated"})


def _is_epoch(key: str, value: Any) -> bool:
    return (key in TIME_KEYS or key.endswith("_at")) and isinstance(value, int | float) \
        and not isinstance(value, bool) and value > 1e8


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # not reached


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Terminal output made printable: no CRs, no ANSI escapes, other controls shown as �."""
    text = ANSI_RE.sub("", text.replace("\r", ""))
    text = _CONTROL_RE.sub("\ufffd", text)
    lines = text.split("\n")
    return "\n".join(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " …" for line in lines)


def last_lines(text: str, n: int) -> tuple[str, int]:
    """The last `n` lines of text and how many lines came before them."""
    lines = text.rstrip("\n").split("\n")
    if lines == [""]:
        return "", 0
    if len(lines) <= n:
        return "\n".join(lines), 0
    return "\n".join(lines[-n:]), len(lines) - n


def earlier_note(n: int) -> str:
    if n <= 0:
        return ""
    return f"… {n} earlier line{'s' if n != 1 else ''}"


def _pct(x: float) -> str:
    return f"{min(max(x, 0.0), 100.0):.2f}%"


def _anchor(index: int, name: str) -> str:
    return f"step-{index}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


# -- console excerpts ------------------------------------------------------------------


def console_log_name(vm: str) -> str | None:
    """console-<vm>.log, or None for a step that ran on no VM (or a VM name that is no file name)."""
    if not vm or "/" in vm or "\\" in vm or vm in (".", ".."):
        return None
    return f"console-{vm}.log"


def _id_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def console_line_id(log_name: str, number: int) -> str:
    """The anchor of line `number` (1-based) of a console log: "console-A-B-L123"."""
    return f"{_id_part(Path(log_name).stem)}-L{number}"


def excerpt(log_path: Path, start: int, end: int | None, max_lines: int = EXCERPT_LINES,
            show_from_line: int | None = None) -> Excerpt:
    """Bytes [start:end] of a console log (end None: to the end of the log), cleaned and
    cut to the last `max_lines` lines; from line `show_from_line` of the log on (an evidence
    line earlier in the slice) when that is in the slice, up to EXCERPT_MAX_LINES lines.
    Each shown line carries its line number in the whole log and its anchor."""
    name = log_path.name
    try:
        size = log_path.stat().st_size
    except OSError:
        return Excerpt(None, f"{name} is missing (run interrupted early?)", name)
    stop = size if end is None else min(end, size)
    source = f"{name} bytes {start}–{stop}"
    notes = []
    if end is not None and end > size:
        notes.append(f"log is shorter than the recorded range (ends at byte {size}, step at {end})")
    if stop <= start:
        notes.append("no console output in this step")
        return Excerpt(None, "; ".join(notes), source, href=quote(name))
    try:
        with open(log_path, "rb") as f:
            head = f.read(stop)
    except OSError as e:
        return Excerpt(None, f"cannot read {name}: {e.strerror or e}", source)
    first_line = head.count(b"\n", 0, start) + 1
    # clean_text neither adds nor removes newlines: line i of the slice is line first_line + i of the log
    lines = clean_text(head[start:stop].decode(errors="replace")).rstrip("\n").split("\n")
    if lines == [""]:
        lines = []
    keep = max_lines
    if show_from_line is not None and 0 <= show_from_line - first_line < len(lines):
        keep = max(keep, min(len(lines) - (show_from_line - first_line), EXCERPT_MAX_LINES))
    earlier = max(0, len(lines) - keep)
    shown = lines[earlier:]
    text = "\n".join(shown)
    if earlier:
        notes.insert(0, earlier_note(earlier))
    if not text.strip():
        notes.append("only blank lines or terminal escapes in this step")
    rows = [ConsoleLine(n, line, console_line_id(name, n)) for n, line in enumerate(shown, first_line + earlier)]
    return Excerpt(text, "; ".join(notes), source, lines=len(shown), href=quote(name), rows=rows)


def step_excerpt(run_dir: Path, step: Step, show_from_line: int | None = None) -> Excerpt:
    log_name = console_log_name(step.vm)
    if log_name is None:
        return Excerpt(None, "no console: this step ran on no VM", "")
    if _runs_to_log_end(step):
        # The step never recorded where it stopped: show the log up to its end, where
        # the guest's last words (a panic, a reset) are.
        ex = excerpt(run_dir / log_name, step.console_start, None, show_from_line=show_from_line)
        if ex.text is not None:
            ex.note = "; ".join(filter(None, ["step did not finish: console up to the end of the log", ex.note]))
        return ex
    return excerpt(run_dir / log_name, step.console_start, step.console_end, show_from_line=show_from_line)


def _runs_to_log_end(step: Step) -> bool:
    unfinished = step.ended is None or step.outcome in ("running", "interrupted")
    return unfinished and step.console_end <= step.console_start


# -- evidence linked to where it came from ---------------------------------------------


@dataclass
class ConsoleLog:
    """A console log as evidence is matched against it: lines without CRs and colour codes."""

    name: str
    line_starts: list[int]  # byte offset of each line
    index: dict[str, list[int]]  # cleaned, right-stripped line -> its line numbers (1-based, ascending)

    @classmethod
    def read(cls, path: Path) -> "ConsoleLog | None":
        try:
            data = path.read_bytes()
        except OSError:
            return None
        starts = [0] + [m.end() for m in re.finditer(b"\n", data)]
        index: dict[str, list[int]] = {}
        for n, line in enumerate(data.decode(errors="replace").split("\n"), 1):
            key = clean(line).rstrip()
            if key.strip():
                index.setdefault(key, []).append(n)
        return cls(path.name, starts, index)

    def line_of(self, offset: int) -> int:
        """The line (1-based) byte `offset` is on."""
        return bisect.bisect_right(self.line_starts, offset)

    def last_line(self) -> int:
        return len(self.line_starts)


@dataclass
class _Target:
    log: str  # console log name
    line: int


def _step_lines(step: Step, log: ConsoleLog) -> tuple[int, int]:
    """The first and last line of a step's slice of its console log."""
    lo = log.line_of(step.console_start)
    if _runs_to_log_end(step):
        return lo, log.last_line()
    return lo, log.line_of(max(step.console_end - 1, step.console_start))


def _match_console(lines: list[str], logs: dict[str, ConsoleLog], step: Step | None) -> list[_Target | None]:
    """Where each of a run of console evidence lines is in the console logs. The lines are
    the last ones before a point (the end of the failed step): matched backwards from the
    end of `step`'s slice, each before the next; failing that, the last match in the step's
    log, then in any log."""
    home = logs.get(console_log_name(step.vm) or "") if step is not None else None
    bound = _step_lines(step, home)[1] if step is not None and home is not None else None
    found: list[_Target | None] = [None] * len(lines)
    for i in range(len(lines) - 1, -1, -1):
        key = clean(lines[i]).rstrip()
        if not key.strip():
            continue
        target = None
        if home is not None:
            numbers = home.index.get(key, [])
            before = [n for n in numbers if bound is None or n <= bound]
            if before or numbers:
                target = _Target(home.name, (before or numbers)[-1])
        if target is None:
            others = [_Target(lg.name, lg.index[key][-1]) for lg in logs.values() if lg is not home and key in lg.index]
            target = others[-1] if others else None
        if target is not None:
            found[i] = target
            if home is not None and target.log == home.name:
                bound = target.line - 1
    return found


_HEADER_RE = re.compile(r"^-- .* --$")
_PAGES_RE = re.compile(r"\bpages?\b|\bCRC-32\b|\bsentinel", re.IGNORECASE)


def _section_id(name: str) -> str:
    return "log-" + _id_part(name)


def link_evidence(evidence: list[str], result: RunResult, logs: dict[str, ConsoleLog], anchors: dict[str, str],
                  log_files: set[str], has_memory: bool) -> tuple[list[EvidenceView], list[_Target | None]]:
    """Each evidence line with where it came from: a console log line (its target, checked
    against the rendered anchors by the caller), the step a "-- then, at STEP" line names,
    the QMP log or cpu_reset log in the Logs section, the Memory section; else plain."""
    steps = {s.name: s for s in result.steps}
    context = steps.get(result.failed_step)
    views: list[EvidenceView] = []
    targets: list[_Target | None] = [None] * len(evidence)
    mode = "console"
    block: list[int] = []  # indexes of the current run of console lines

    def flush() -> None:
        if block:
            for i, t in zip(block, _match_console([evidence[i] for i in block], logs, context)):
                targets[i] = t
            block.clear()

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
            elif "cpu_reset" in line:
                mode = "cpu_reset"
                if (name := cpu_reset_log()) is not None:
                    view = EvidenceView(text, "#" + _section_id(name), name)
            else:
                mode = "console"
        elif line.startswith("QMP event"):
            if "qmp.log" in log_files:
                view = EvidenceView(text, "#" + _section_id("qmp.log"), "qmp.log")
        elif mode == "cpu_reset":
            if (name := cpu_reset_log()) is not None:
                view = EvidenceView(text, "#" + _section_id(name), name)
        else:
            block.append(i)
        views.append(view)
    flush()
    for i, view in enumerate(views):
        if targets[i] is None and view.href is None and has_memory and _PAGES_RE.search(view.text):
            views[i] = EvidenceView(view.text, "#memory", "the Memory section")
    return views, targets


# -- reproduce -------------------------------------------------------------------------


def _in_checkout(scenario_path: str, root: Any) -> str | None:
    """The scenario's path relative to the kjlab checkout the run used, when it is in it."""
    path = Path(scenario_path)
    if not path.is_absolute():
        return scenario_path
    if isinstance(root, str) and root:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return None
    # runs from before provenance recorded kjlab_root: the lab's scenarios/ directory
    parts = path.parts
    if "scenarios" in parts:
        at = len(parts) - 1 - parts[::-1].index("scenarios")
        return Path(*parts[at:]).as_posix()
    return None


def reproduce_view(result: RunResult) -> ReproduceView:
    """The command that reproduces the run, the kjlab commit it ran at, and what it ran on."""
    prov = result.provenance
    extra: list[str] = []
    if prov.get("kernel_tree"):
        extra = ["--kernel-tree", str(prov["kernel_tree"])]
    scenario = result.scenario_path or "SCENARIO.toml"
    command = shlex.join(["kjlab", "run", scenario, *extra])

    recorded = str(prov.get("kjlab_commit") or "unknown")
    dirty = recorded.endswith("-dirty")
    commit = recorded.removesuffix("-dirty")
    installed = re.fullmatch(r"kjlab (\S+) \(installed\)", commit)
    notes: list[str] = []
    rel = _in_checkout(scenario, prov.get("kjlab_root"))
    if installed:
        one_liner = " && ".join([f"pip install {shlex.quote('kjlab==' + installed.group(1))}", command])
    else:
        run = shlex.join([".venv/bin/kjlab", "run", rel or scenario, *extra])
        steps = ([] if commit == "unknown" else [f"git checkout {shlex.quote(commit)}"]) + ["./bootstrap.sh", run]
        one_liner = " && ".join(steps)
        if commit == "unknown":
            notes.append("the kjlab commit was not recorded for this run: check out the commit of its time by hand")
    if dirty:
        notes.append(f"the run's checkout had uncommitted changes ({recorded}): the commit alone may not "
                     "reproduce it exactly")
    if Path(scenario).parent.name == "cells":
        notes.append("a matrix cell: the scenario is the cell's file in the night directory, written from the "
                     "matrix; copy it along to reproduce the cell on another machine")
    elif rel is None:
        notes.append("the scenario file is outside the kjlab checkout: copy it along")

    facts: list[tuple[str, str]] = [("kjlab", (commit + (" + uncommitted changes" if dirty else "")))]
    for key, label in (("kernel", "kernel"), ("kernel_a", "kernel A")):
        k = prov.get(key)
        if not isinstance(k, dict):
            continue
        version = " ".join(str(k[f]) for f in ("source", "source_version") if k.get(f))
        if k.get("release"):
            version += f" (release {k['release']})"
        facts.append((label, version or "unknown"))
        facts.append((f"{label} fragments", ", ".join(map(str, k.get("fragments", []))) or "none"))
        facts.append((f"{label} patches", ", ".join(map(str, k.get("patches", []))) or "none"))
    if extra:
        facts.append(("kernel tree", extra[1]))
    facts.append(("QEMU", str(prov.get("qemu") or "unknown")))
    if prov.get("accelerator"):
        facts.append(("accelerator", str(prov["accelerator"])))
    return ReproduceView(command, one_liner, recorded, facts, notes)


# -- the rest of the view --------------------------------------------------------------


def _verdict_view(code: str) -> VerdictView:
    verdict = Verdict.parse(code)
    return VerdictView(code or "—", verdict.css, verdict.meaning if code == verdict else f"unknown verdict ({verdict.meaning})")


def _run_end(run_dir: Path, result: RunResult) -> float:
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


def _timeline(result: RunResult, run_end: float, anchors: list[str]) -> tuple[list[TimelineBar], list[Tick]]:
    t0 = result.started
    span = max(run_end - t0, 1e-3)
    bars = []
    for step, anchor in zip(result.steps, anchors):
        end = step.ended if step.ended is not None else run_end
        left = (step.started - t0) / span * 100
        width = max((end - step.started) / span * 100, 0.4)  # a 10 ms step is still visible
        width = min(width, max(100 - left, 0.4))
        label = f"{step.seed_step} · {step.name}" if step.seed_step else step.name
        tooltip = (
            f"{step.title or step.name}: +{format_duration(step.started - t0)} → "
            f"+{format_duration(end - t0)} ({format_duration(end - step.started)}), {step.outcome}"
        )
        bars.append(TimelineBar(anchor, label, outcome_class(step.outcome), _pct(left), _pct(width), tooltip))
    ticks = []
    if result.steps:
        every = _nice_tick(span)
        t = 0.0
        while t <= span + 1e-9:
            ticks.append(Tick(_pct(t / span * 100), "+" + format_duration(t) if t else "0"))
            t += every
    return bars, ticks


def _command_views(step: Step) -> list[CommandView]:
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


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def provenance_rows(data: Any, depth: int = 0) -> list[ProvenanceRow]:
    """Nested dicts and lists as indented key/value rows. Lists of plain values become
    one value: comma-separated if short, else one item per line."""
    rows: list[ProvenanceRow] = []
    items = data.items() if isinstance(data, dict) else ((f"[{i}]", v) for i, v in enumerate(data))
    for key, value in items:
        key = str(key)
        if isinstance(value, dict | list | tuple) and not value:
            rows.append(ProvenanceRow(key, "(empty)", depth, False))
        elif isinstance(value, dict) or (isinstance(value, list | tuple) and any(isinstance(v, dict | list) for v in value)):
            rows.append(ProvenanceRow(key, "", depth, True))
            rows.extend(provenance_rows(value, depth + 1))
        elif isinstance(value, list | tuple):
            parts = [_scalar(v) for v in value]
            joined = ", ".join(parts)
            rows.append(ProvenanceRow(key, joined if len(joined) <= 80 else "\n".join(parts), depth, False))
        elif _is_epoch(key, value):
            rows.append(ProvenanceRow(key, format_time(float(value)), depth, False))
        else:
            rows.append(ProvenanceRow(key, _scalar(value), depth, False))
    return rows


def _link(run_dir: Path, name: str, rel: str) -> LinkView:
    path = Path(rel)
    full = path if path.is_absolute() else run_dir / path
    try:
        size = format_size(full.stat().st_size) if full.is_file() else ("directory" if full.is_dir() else None)
    except OSError:
        size = None
    if size is None:
        return LinkView(name, rel, None, "missing")
    href = path.as_uri() if path.is_absolute() else quote(path.as_posix())
    return LinkView(name, rel, href, size)


_LOG_PATTERNS = ("console-*.log", "qemu-*.log", "qmp.log", "cpu-reset-*.log", "*.log", "results.json")


def _log_links(run_dir: Path) -> list[LinkView]:
    seen: set[str] = set()
    links = []
    for pattern in _LOG_PATTERNS:
        for p in sorted(run_dir.glob(pattern)):
            if p.name not in seen and p.is_file():
                seen.add(p.name)
                link = _link(run_dir, p.name, p.name)
                link.anchor = _section_id(p.name)
                links.append(link)
    return links


def kernel_log_views(run_dir: Path, logs: list[dict[str, Any]], step_anchors: dict[str, str]) -> list[KernelLogView]:
    """The report's section of kernel logs read from memory: each whole, cleaned of control
    characters (the template escapes the rest: guest text is never markup)."""
    views = []
    for i, entry in enumerate(logs):
        kernel, release = str(entry.get("kernel") or ""), str(entry.get("release") or "")
        title = (f"kernel {kernel}" if kernel else "a kernel") + (f" ({release})" if release else "")
        step = str(entry.get("step") or "")
        source = f"read from memory: {entry.get('snapshot', '?')}" + (f", when the guest stopped answering in {step}"
                                                                         if step else "")
        text_rel, pages_rel = str(entry.get("text", "")), str(entry.get("pages", ""))
        text: str | None = None
        note = ""
        try:
            text = clean_text((run_dir / text_rel).read_text(errors="replace")).rstrip("\n") if text_rel else None
        except OSError as e:
            note = f"{text_rel} cannot be read: {e.strerror or e}"
        if text is None and not note:
            note = "no text file recorded"
        views.append(KernelLogView(
            anchor=f"kernel-log-{i}", title=title, source=source, step_anchor=step_anchors.get(step),
            text=text, lines=len(text.split("\n")) if text else 0, note=note,
            text_link=_link(run_dir, "log as text", text_rel) if text_rel else LinkView("log as text", "", None, "missing"),
            pages_link=(_link(run_dir, "its pages (ELF for vmcore-dmesg)", pages_rel) if pages_rel
                        else LinkView("its pages", "", None, "missing")),
        ))
    return views


def build_view(run_dir: Path) -> ReportView:
    """The view model of a run directory (reads results.json and the console logs)."""
    run_dir = Path(run_dir)
    result = load(run_dir)
    run_end = _run_end(run_dir, result)
    warnings: list[str] = []

    anchors = [_anchor(i, s.name) for i, s in enumerate(result.steps)]
    failed_anchor = next((a for s, a in zip(result.steps, anchors) if s.name == result.failed_step), None)

    logs: dict[str, ConsoleLog] = {}
    for vm in dict.fromkeys(s.vm for s in result.steps):
        name = console_log_name(vm)
        if name and (log_file := ConsoleLog.read(run_dir / name)) is not None:
            logs[name] = log_file
    log_links = _log_links(run_dir)
    mem = memory_view(result.memory)
    evidence, targets = link_evidence(result.evidence, result, logs, dict(zip((s.name for s in result.steps), anchors)),
                                      {lk.name for lk in log_links}, mem is not None)

    steps = []
    shown_ids: set[str] = set()
    for i, (s, anchor) in enumerate(zip(result.steps, anchors)):
        show_from = None
        if (log_name := console_log_name(s.vm)) in logs:
            lo, hi = _step_lines(s, logs[log_name])
            wanted = [t.line for t in targets if t is not None and t.log == log_name and lo <= t.line <= hi]
            show_from = min(wanted, default=None)
        ex = step_excerpt(run_dir, s, show_from)
        for row in ex.rows:  # a line split between two steps is anchored once, in the first
            if row.id in shown_ids:
                row.id = None
            elif row.id is not None:
                shown_ids.add(row.id)
        end = s.ended if s.ended is not None else (run_end if s.outcome in ("running", "interrupted") else None)
        duration = format_duration(end - s.started if end is not None else None)
        if s.ended is None and end is not None:
            duration = "≥ " + duration
        is_failed = s.name == result.failed_step and bool(s.name)
        steps.append(
            StepView(
                index=i,
                anchor=anchor,
                name=s.name,
                title=s.title,
                seed_step=s.seed_step,
                vm=s.vm or "—",
                start="+" + format_duration(s.started - result.started),
                duration=duration,
                outcome=s.outcome,
                css=outcome_class(s.outcome),
                message=s.message,
                commands=_command_views(s),
                excerpt=ex,
                is_failed_step=is_failed,
                open=is_failed or s.outcome in ("failed", "interrupted"),
            )
        )

    for vm in dict.fromkeys(s.vm for s in result.steps):
        name = console_log_name(vm)
        if name and not (run_dir / name).is_file():
            warnings.append(f"{name} is missing: the run may have stopped before the VM started")
            log.warning("%s: %s is missing", run_dir, name)
    if result.verdict == "RUNNING":
        warnings.append("no verdict recorded: the run is still going or was killed hard")

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

    timeline, ticks = _timeline(result, run_end, anchors)
    checks = [
        CheckView(c.name, c.ok, "ok" if c.ok else "FAILED", "pass" if c.ok else "fail", c.detail) for c in result.checks
    ]
    n_ok = sum(c.ok for c in result.checks)

    snapshots = []
    for i, snap in enumerate(result.snapshots):
        name = str(snap.get("name", f"snapshot {i}"))
        rel = str(snap.get("path", ""))
        link = _link(run_dir, name, rel) if rel else LinkView(name, "", None, "no path recorded")
        extra = [(str(k), format_time(float(v)), f"epoch {v}") if _is_epoch(str(k), v) else (str(k), _scalar(v), "")
                 for k, v in snap.items() if k not in ("name", "path")]
        snapshots.append(SnapshotView(name, link, extra))

    recorded = {Path(str(snap.get("path", ""))).name for snap in result.snapshots}
    for p in sorted(run_dir.glob("snapshot-*.elf")):
        if p.name not in recorded:  # taken, but the run stopped before recording it
            note = [("note", "found in the run dir, not recorded", "")]
            snapshots.append(SnapshotView(p.stem, _link(run_dir, p.stem, p.name), note))

    artifacts = [_link(run_dir, name, rel) for name, rel in sorted(result.artifacts.items())]
    for a in artifacts:
        if a.href is None:
            log.info("%s: artifact %s (%s) is missing", run_dir, a.name, a.path)

    return ReportView(
        page_title=f"{result.verdict} · {result.scenario} · {result.run_id}",
        run_id=result.run_id,
        scenario=result.scenario,
        scenario_path=result.scenario_path,
        flow=result.flow,
        started=date_view(result.started),
        ended=date_view(result.ended),
        duration=format_duration(run_end - result.started) + ("" if result.ended is not None else " (no end recorded)"),
        verdict=_verdict_view(result.verdict),
        expected=_verdict_view(result.expected_verdict),
        reason=result.reason,
        failed_step=result.failed_step,
        failed_step_anchor=failed_anchor,
        evidence=evidence,
        reproduce=reproduce_view(result),
        warnings=warnings,
        timeline=timeline,
        ticks=ticks,
        steps=steps,
        checks=checks,
        checks_summary=f"{n_ok} of {len(checks)} ok" if checks else "no checks recorded",
        quirks=[
            QuirkView(k, "on" if v else "off", "pass" if v else "skipped") for k, v in sorted(result.quirks.items())
        ],
        provenance=provenance_rows(result.provenance),
        snapshots=snapshots,
        artifacts=artifacts,
        logs=log_links,
        memory=mem,
        kernel_logs=kernel_log_views(run_dir, result.kernel_logs, {s.name: a for s, a in zip(result.steps, anchors)}),
        generated=format_time(time.time()),
    )


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
    path = run_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    log.info("report: %s", path)
    return path
