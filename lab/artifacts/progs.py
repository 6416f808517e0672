"""The lab's own small guest programs (guests/progs), built with the host's gcc for each
guest arch (lab.arch).

No libc: the host has no i386 libc headers and needs none. Each program is one C or
assembler file plus guests/progs/kjsys.h (a tiny _start and the system calls: `int $0x80` on
i386, `syscall` on x86_64), built with `gcc -m32`/`-m64 -nostdlib -static`, so every output
is a static ELF executable that runs on any kernel of its arch (and on the x86_64 host, for
tests):

- bin/kj-jump-back: kexec_load of a jump-back image in kernel B (kexec-tools quirk 7)
- bin/kj-sentinel: sentinel pages in a tmpfs file or in a process (lab/memory/sentinels.py)
- bin/kj-proof: A's proof file (fill, exact check) and the CRC-32 C takes of the image
- bin/kj-image: B makes a saved x86_64 image loadable (its kernel-text PT_LOADs -> PT_NULL)
- boot/kj-physcall.elf (i386 only): a physical-mode program for `kexec --load-preserve-context
  --args-none`, one PT_LOAD at physical PHYSCALL_BASE (the seed 003 use of kexec jump); it is
  32-bit code entered with paging off, which an x86_64 kernel's kexec jump (long mode) does not do

Cached under the sources, the flags and the gcc/ld versions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .. import GUESTS_DIR
from ..arch import Arch
from ..cache import cached_dir, hash_inputs, hash_tree
from ..errors import BuildError, CommandFailed
from ..proc import run

log = logging.getLogger(__name__)

RECIPE = 1  # bump when the build changes in a way the key does not see
PROGS_DIR = GUESTS_DIR / "progs"
PHYSCALL_BASE = 0x1000000  # kj-physcall.ld's default; p_paddr == p_vaddr == this
GCC = "gcc"

COMMON_FLAGS = (
    "-static", "-nostdlib", "-fno-pic", "-no-pie",
    "-Wall", "-Wextra", "-Werror",
    "-Wl,--build-id=none", "-Wl,-z,noexecstack",
)
C_FLAGS = (
    "-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
    "-fcf-protection=none", "-Os",
)
# one RWX PT_LOAD on purpose: code, strings and the call counter in one page
PHYSCALL_FLAGS = ("-Wl,--no-warn-rwx-segments", "-Wl,-T,kj-physcall.ld")


@dataclass(frozen=True)
class Prog:
    image_path: str  # path inside the initramfs
    source: str  # file in guests/progs
    flags: tuple[str, ...]
    load_address: int | None = None  # physical address the single PT_LOAD must have
    i386_only: bool = False  # built for i386 guests only (lab.arch.ArchInfo.physcall)


PROGS = (
    Prog("bin/kj-jump-back", "kj-jump-back.c", C_FLAGS),
    Prog("bin/kj-sentinel", "kj-sentinel.c", C_FLAGS),
    Prog("bin/kj-proof", "kj-proof.c", (*C_FLAGS, "-O2")),  # -O2 after -Os: its loops are the cost
    Prog("bin/kj-image", "kj-image.c", C_FLAGS),
    Prog("boot/kj-physcall.elf", "kj-physcall.S", PHYSCALL_FLAGS, load_address=PHYSCALL_BASE, i386_only=True),
)


def progs_for(arch: Arch) -> tuple[Prog, ...]:
    return tuple(p for p in PROGS if arch.info.physcall or not p.i386_only)


def gcc_command(prog: Prog, out: Path, arch: Arch = Arch.I386) -> list[str]:
    """The command line, to run in PROGS_DIR (relative names: the key is the same anywhere).
    The arch's target flags come first, as the i386 build always had them."""
    return [GCC, *arch.info.gcc_flags, *COMMON_FLAGS, *prog.flags, "-o", str(out), prog.source]


def _tool_versions() -> dict[str, str]:
    """First lines of `gcc --version` and of the ld that gcc runs: part of the cache key."""
    try:
        ld = run([GCC, "-print-prog-name=ld"], timeout=60).strip() or "ld"
        return {"gcc": run([GCC, "--version"], timeout=60).splitlines()[0],
                "ld": run([ld, "--version"], timeout=60).splitlines()[0]}
    except (OSError, CommandFailed, IndexError) as exc:
        raise BuildError(f"the guest programs need the host's gcc and binutils: {exc}") from exc


def build_progs(log_path: Path | None = None, arch: Arch = Arch.I386) -> dict[str, Path]:
    """Build (or take from the cache) every guest program of `arch`; {path in the image: file}."""
    if not PROGS_DIR.is_dir():
        raise BuildError(f"{PROGS_DIR}: guest program sources missing")
    progs = progs_for(arch)
    key = hash_inputs({
        "kind": "progs",
        "recipe": RECIPE,
        "sources": hash_tree(PROGS_DIR),
        "tools": _tool_versions(),
        "commands": {p.image_path: gcc_command(p, Path("OUT"), arch) for p in progs},
    })

    def build(out: Path) -> None:
        for prog in progs:
            dst = out / prog.image_path
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                run(gcc_command(prog, dst, arch), log_path=log_path, cwd=PROGS_DIR, timeout=300)
            except OSError as exc:
                raise BuildError(f"cannot run {GCC} to build {prog.source}: {exc}") from exc
            except CommandFailed as exc:
                raise BuildError(f"building guests/progs/{prog.source} failed:\n{exc}") from exc
            check_elf(dst, prog, arch)

    final, cached = cached_dir("progs", key, build)
    built = {p.image_path: final / p.image_path for p in progs}
    for prog in progs:  # cheap, and a cache tampered with is caught too
        check_elf(built[prog.image_path], prog, arch)
    log.info("guest programs %s %s (%s): %s", arch, key, "cached" if cached else "built", final)
    return built


def check_elf(path: Path, prog: Prog, arch: Arch = Arch.I386) -> None:
    """A static ELF executable of `arch`; for a physical-mode program one PT_LOAD at its address."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            what = f"{prog.image_path} ({path})"
            want_class, want_machine = arch.info.elf_class, arch.info.elf_machine
            if elf.elfclass != want_class or elf["e_machine"] != want_machine:
                raise BuildError(f"{what}: ELFCLASS{elf.elfclass} {elf['e_machine']}, expected "
                                 f"ELFCLASS{want_class} {want_machine}")
            if elf["e_type"] != "ET_EXEC":
                raise BuildError(f"{what}: {elf['e_type']}, expected ET_EXEC")
            segs = list(elf.iter_segments())
            dynamic = [s["p_type"] for s in segs if s["p_type"] in ("PT_INTERP", "PT_DYNAMIC")]
            if dynamic or elf.get_section_by_name(".dynamic") is not None:
                raise BuildError(f"{what}: not static ({', '.join(dynamic) or '.dynamic'})")
            loads = [s for s in segs if s["p_type"] == "PT_LOAD"]
            if not loads:
                raise BuildError(f"{what}: no PT_LOAD")
            entry = elf["e_entry"]
            if not any(s["p_vaddr"] <= entry < s["p_vaddr"] + s["p_memsz"] for s in loads):
                raise BuildError(f"{what}: entry {entry:#x} outside every PT_LOAD")
            if prog.load_address is not None:
                got = [(s["p_paddr"], s["p_vaddr"]) for s in loads]
                if got != [(prog.load_address, prog.load_address)]:
                    shown = ", ".join(f"paddr {p:#x} vaddr {v:#x}" for p, v in got)
                    raise BuildError(f"{what}: PT_LOADs {shown}; expected one at physical "
                                     f"{prog.load_address:#x} with p_paddr == p_vaddr")
                if entry != prog.load_address:
                    raise BuildError(f"{what}: entry {entry:#x}, expected {prog.load_address:#x}")
    except ELFError as exc:
        raise BuildError(f"{path}: not a readable ELF file: {exc}") from exc
    except OSError as exc:
        raise BuildError(f"{path}: {exc}") from exc
