"""Files written whole or not at all: a reader (a browser, a night's summary, a resumed
run) never sees half of one, and a failed write (a full disk) leaves no temporary behind."""

from __future__ import annotations

import os
from pathlib import Path


def write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
