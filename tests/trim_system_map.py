"""Trim a kernel's System.map to the symbols a recorded run's evidence names (and the next
one of each), as tests/data/runs/<run>/System.map: the replay symbolizes as the run did.

    .venv/bin/python tests/trim_system_map.py RUN_DIR FULL_SYSTEM_MAP
"""

from __future__ import annotations

import bisect
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.symbols import _HEX_ADDR  # noqa: E402


# what lab.memory.kernel_log reads a kernel's log from memory with, and what the last leg
# of the round-trip proof reads A's kexec image and real-mode area with (lab.memory.resumed)
KEPT = ("vmcoreinfo_note", "prb", "kexec_image", "real_mode_header", "real_mode_blob", "real_mode_blob_end",
        "syscore_resume")


def main(run: Path, full: Path) -> None:
    lines = [line for line in full.read_text().splitlines()
             if len(line.split()) >= 3 and line.split()[1] in set("tTwWdDbBrR")]
    entries = sorted((int(line.split()[0], 16), line) for line in lines)
    addrs = [a for a, _ in entries]
    keep: set[int] = {i for i, (_, line) in enumerate(entries) if line.split()[2] in KEPT}
    for line in json.loads((run / "results.json").read_text())["evidence"]:
        for m in _HEX_ADDR.finditer(line):
            k = bisect.bisect_right(addrs, int(m.group(1), 16)) - 1
            keep.update(i for i in (k, k + 1) if 0 <= i < len(entries))
    (run / "System.map").write_text("".join(entries[i][1] + "\n" for i in sorted(keep)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
