"""The ids of the report page that links point at: steps, console lines, Logs entries."""

from __future__ import annotations

import re
from pathlib import Path


def id_part(name: str) -> str:
    """A name made fit for an HTML id: runs of other characters become one "-"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def step_anchor(index: int, name: str) -> str:
    """The id of a step in the steps list: "step-3-kexec_jump"."""
    return f"step-{index}-" + id_part(name)


def console_line_id(log_name: str, number: int) -> str:
    """The anchor of line `number` (1-based) of a console log: "console-A-B-L123"."""
    return f"{id_part(Path(log_name).stem)}-L{number}"


def section_id(name: str) -> str:
    """The id of a file's entry in the Logs section: "log-qmp-log"."""
    return "log-" + id_part(name)
