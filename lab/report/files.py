"""Links to the run directory's files: its logs, snapshots and artifacts."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from lab.results import RunResult

from .anchors import section_id
from .format import format_scalar, format_size, format_time, is_epoch
from .view import LinkView, SnapshotView

log = logging.getLogger("lab.report")  # the package's logger, as before the split into modules

_LOG_PATTERNS = ("console-*.log", "qemu-*.log", "qmp.log", "cpu-reset-*.log", "*.log", "results.json")


def file_link(run_dir: Path, name: str, rel: str) -> LinkView:
    """A link to a file (or directory) recorded relative to the run dir, or absolute; "missing" when absent."""
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


def log_links(run_dir: Path) -> list[LinkView]:
    """The run dir's logs for the Logs section, each with its anchor."""
    seen: set[str] = set()
    links = []
    for pattern in _LOG_PATTERNS:
        for p in sorted(run_dir.glob(pattern)):
            if p.name not in seen and p.is_file():
                seen.add(p.name)
                link = file_link(run_dir, p.name, p.name)
                link.anchor = section_id(p.name)
                links.append(link)
    return links


def snapshot_views(run_dir: Path, result: RunResult) -> list[SnapshotView]:
    """The recorded snapshots, then those found in the run dir but never recorded."""
    snapshots = []
    for i, snap in enumerate(result.snapshots):
        name = str(snap.get("name", f"snapshot {i}"))
        rel = str(snap.get("path", ""))
        link = file_link(run_dir, name, rel) if rel else LinkView(name, "", None, "no path recorded")
        extra = [(str(k), format_time(float(v)), f"epoch {v}") if is_epoch(str(k), v)
                 else (str(k), format_scalar(v), "")
                 for k, v in snap.items() if k not in ("name", "path")]
        snapshots.append(SnapshotView(name, link, extra))

    recorded = {Path(str(snap.get("path", ""))).name for snap in result.snapshots}
    for p in sorted(run_dir.glob("snapshot-*.elf")):
        if p.name not in recorded:  # taken, but the run stopped before recording it
            note = [("note", "found in the run dir, not recorded", "")]
            snapshots.append(SnapshotView(p.stem, file_link(run_dir, p.stem, p.name), note))
    return snapshots


def artifact_links(run_dir: Path, result: RunResult) -> list[LinkView]:
    """The run's artifacts by name; a missing one is logged."""
    artifacts = [file_link(run_dir, name, rel) for name, rel in sorted(result.artifacts.items())]
    for a in artifacts:
        if a.href is None:
            log.info("%s: artifact %s (%s) is missing", run_dir, a.name, a.path)
    return artifacts
