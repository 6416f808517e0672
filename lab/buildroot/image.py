"""The Buildroot initramfs image: Buildroot's target tree + guests/rootfs + the guest programs,
packed by the lab's own cpio writer (as the Debian recipe packs its image)."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from ..artifacts.initramfs import DIRS, CpioEntry, _copy_guest_files, _stage_progs, append_gzip_cpio, tree_entries
from ..cache import cache_root
from ..errors import BuildError
from ..proc import run

log = logging.getLogger(__name__)

COPY_TIMEOUT = 600.0


def pack_target(target: Path, rootfs: Path, progs: dict[str, Path], image: Path) -> None:
    """Write `image` (gzip'd newc cpio) from a copy of Buildroot's target tree with `rootfs`
    (guests/rootfs: /init and the helper scripts) and `progs` ({path in the image: file}) on top."""
    if not (target / "bin" / "busybox").is_file():
        raise BuildError(f"{target}: no bin/busybox - not a finished Buildroot target tree")
    scratch_root = cache_root() / "tmp"
    scratch_root.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="br-image-", dir=scratch_root) as scratch:
        stage = Path(scratch) / "stage"
        run(["cp", "-a", str(target), str(stage)], timeout=COPY_TIMEOUT)
        # Buildroot's skeleton: /init is the lab's (PID 1 of an initramfs); the rest stays
        _copy_guest_files(rootfs, stage)
        _stage_progs(progs, stage)
        for d in DIRS:  # the mount points /init uses, whatever Buildroot's skeleton has
            (stage / d).mkdir(exist_ok=True)
        if not os.access(stage / "init", os.X_OK):
            raise BuildError(f"{rootfs}/init missing or not executable: every guest image needs one")
        entries = [e for e in tree_entries(stage) if e.name != "dev/console"]
        entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
        entries.sort(key=lambda e: e.name.split("/"))
        append_gzip_cpio(entries, image)
        (image.parent / "manifest.txt").write_text("".join(e.name + "\n" for e in entries))
    log.info("Buildroot image %s: %d entries, %d bytes", image, len(entries), image.stat().st_size)
