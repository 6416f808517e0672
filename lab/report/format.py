"""Formatting for the report: durations, dates, sizes, and terminal text made printable."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from lab.console import ANSI_RE

from .view import DateView

MAX_LINE_CHARS = 2000  # a guest spewing one endless line must not blow up the page


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


def is_epoch(key: str, value: Any) -> bool:
    return (key in TIME_KEYS or key.endswith("_at")) and isinstance(value, int | float) \
        and not isinstance(value, bool) and value > 1e8


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # not reached


def format_scalar(value: Any) -> str:
    """A plain value of results.json's free-form parts as text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def percent(x: float) -> str:
    """A position on the timeline, clamped to 0–100: "12.50%"."""
    return f"{min(max(x, 0.0), 100.0):.2f}%"


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
