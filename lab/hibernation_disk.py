"""The hibernation disk: a fresh raw image with an ext2 filesystem, one per run, kept in
the run directory so the saved image can be inspected afterwards (debugfs; reading files
back out is lab.image_tools.read_from_disk)."""

from __future__ import annotations

import logging
from pathlib import Path

from .proc import run

log = logging.getLogger(__name__)


def make_disk(path: Path, size_mib: int = 512, log_path: Path | None = None) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)  # sparse: costs only what the guests write
    run(["mkfs.ext2", "-q", "-F", "-L", "kjhib", "-b", "4096", str(path)], log_path=log_path, timeout=120)
    log.info("hibernation disk %s (%d MiB, ext2)", path, size_mib)
    return path
