"""The Buildroot initramfs image: Buildroot's target tree + guests/rootfs + the guest programs,
packed by the lab's own cpio writer (as the Debian recipe packs its image)."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from ..artifacts.initramfs import (
    DIRS, CpioEntry, _copy_guest_files, _is_elf, _stage_progs, append_gzip_cpio, elf_closure, elf_deps, tree_entries,
)
from ..cache import cache_root
from ..errors import BuildError
from ..proc import run

log = logging.getLogger(__name__)

COPY_TIMEOUT = 600.0
PROGRAM_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")
LIBRARY_DIRS = ("lib", "usr/lib")  # Buildroot's target: no multiarch directories, no ld.so.cache


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
        programs = check_programs_load(stage)
        entries = [e for e in tree_entries(stage) if e.name != "dev/console"]
        entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
        entries.sort(key=lambda e: e.name.split("/"))
        append_gzip_cpio(entries, image)
        (image.parent / "manifest.txt").write_text("".join(e.name + "\n" for e in entries))
    log.info("Buildroot image %s: %d entries, %d bytes; %d programs, each with its interpreter and libraries",
             image, len(entries), image.stat().st_size, len(programs))


def check_programs_load(root: Path) -> dict[str, tuple[str, ...]]:
    """Every ELF program in root's bin and sbin directories finds its interpreter and each
    DT_NEEDED library (recursively) in root's lib or usr/lib, as ld.so in the guest would:
    {program: the files it loads}. BuildError naming the program and what it lacks
    otherwise (a package built against a library the image does not carry)."""
    found: dict[str, tuple[str, ...]] = {}
    for d in PROGRAM_DIRS:
        top = root / d
        if top.is_symlink() or not top.is_dir():  # a merged /usr: seen once, under usr/
            continue
        for path in sorted(top.iterdir()):
            if path.is_symlink() or not path.is_file() or not _is_elf(path):
                continue
            rel = f"{d}/{path.name}"
            if not elf_deps(path).interp:  # static: loads nothing
                found[rel] = ()
                continue
            try:
                found[rel] = tuple(sorted(elf_closure(root, [rel], LIBRARY_DIRS)))
            except BuildError as exc:
                raise BuildError(f"the Buildroot image would not run {rel}: "
                                 + str(exc).replace("of the extracted packages", "of the image")) from exc
    return found
