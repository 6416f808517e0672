"""Console logs in the report: each step's excerpt, and the logs as evidence is matched against them."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lab.evidence import clean
from lab.results import Step

from .anchors import console_line_id
from .format import clean_text, earlier_note
from .view import ConsoleLine, Excerpt

EXCERPT_LINES = 60  # console lines shown per step
EXCERPT_MAX_LINES = 400  # ... more when an evidence line earlier in the step must be shown


def console_log_name(vm: str) -> str | None:
    """console-<vm>.log, or None for a step that ran on no VM (or a VM name that is no file name)."""
    if not vm or "/" in vm or "\\" in vm or vm in (".", ".."):
        return None
    return f"console-{vm}.log"


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
    if runs_to_log_end(step):
        # The step never recorded where it stopped: show the log up to its end, where
        # the guest's last words (a panic, a reset) are.
        ex = excerpt(run_dir / log_name, step.console_start, None, show_from_line=show_from_line)
        if ex.text is not None:
            ex.note = "; ".join(filter(None, ["step did not finish: console up to the end of the log", ex.note]))
        return ex
    return excerpt(run_dir / log_name, step.console_start, step.console_end, show_from_line=show_from_line)


def runs_to_log_end(step: Step) -> bool:
    """An unfinished step that never recorded where its console slice ends."""
    unfinished = step.ended is None or step.outcome in ("running", "interrupted")
    return unfinished and step.console_end <= step.console_start


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


def step_lines(step: Step, log: ConsoleLog) -> tuple[int, int]:
    """The first and last line of a step's slice of its console log."""
    lo = log.line_of(step.console_start)
    if runs_to_log_end(step):
        return lo, log.last_line()
    return lo, log.line_of(max(step.console_end - 1, step.console_start))
