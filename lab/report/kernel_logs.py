"""The report's section of kernel logs read from memory snapshots (lab.memory.kernel_log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import file_link
from .format import clean_text
from .view import KernelLogView, LinkView


def kernel_log_views(run_dir: Path, logs: list[dict[str, Any]], step_anchors: dict[str, str]) -> list[KernelLogView]:
    """The report's section of kernel logs read from memory: each whole, cleaned of control
    characters (the template escapes the rest: guest text is never markup)."""
    views = []
    for i, entry in enumerate(logs):
        kernel, release = str(entry.get("kernel") or ""), str(entry.get("release") or "")
        title = (f"kernel {kernel}" if kernel else "a kernel") + (f" ({release})" if release else "")
        step = str(entry.get("step") or "")
        source = f"read from memory: {entry.get('snapshot', '?')}" + (f", when the guest died silently in {step}"
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
            text_link=file_link(run_dir, "log as text", text_rel) if text_rel else LinkView("log as text", "", None, "missing"),
            pages_link=(file_link(run_dir, "its pages (ELF for vmcore-dmesg)", pages_rel) if pages_rel
                        else LinkView("its pages", "", None, "missing")),
        ))
    return views
