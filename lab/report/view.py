"""The report's view model: plain values the template renders, every decision already made.

Python decides everything (colours by verdict class, timeline positions, formatted
durations, console excerpts); reports/templates/report.html.j2 only renders these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .colours import PALETTE, Colour


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
