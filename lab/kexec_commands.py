"""The guest command lines of the flows, built by pure functions from the scenario's
values and quirks: what kexec-tools, makedumpfile and the lab's helpers are asked to do
at each step. tests/test_kexec_commands.py pins them with golden files."""

from __future__ import annotations

from collections.abc import Mapping

from .arch import Arch

B_APPEND = "console=ttyS0 loglevel=7 kjlab.role=B"
LEGACY_WINDOW_TOP = 0xFFFFFF  # the 2008 command line's --mem-max (facts item 1)
PHYSCALL_WINDOW = (0x1000000, 0x1000FFF)  # kj-physcall.elf's one PT_LOAD (guests/progs/kj-physcall.ld)


def kexec(quirks: Mapping[str, bool]) -> str:
    """kexec-tools with debug output (the lab reads the entry from it) and the kexec_load
    syscall (-c: kexec-tools >= 2.0.27 tries kexec_file_load first, facts item 2)."""
    return "kexec -d -x" + (" -c" if quirks["kexec-syscall"] else "")


def load_b(quirks: Mapping[str, bool], window: tuple[int, int]) -> str:
    """Seed step 5: kernel B with --load-preserve-context into its window."""
    lo, hi = window
    if not quirks["wide-window"]:
        hi = min(hi, LEGACY_WINDOW_TOP)
    memmap = " --pass-memmap-cmdline" if quirks["pass-memmap"] else ""
    return (f"{kexec(quirks)} --load-preserve-context /boot/bzImage --mem-min={lo:#x} --mem-max={hi:#x}"
            f" --initrd=/boot/rootfsB.gz{memmap} --append='{B_APPEND}'")


def save_image(save: str, dump_level: int, name: str) -> str:
    """Seed step 7: B writes A's memory from /proc/vmcore to the mounted disk."""
    if save == "makedumpfile":
        return f"time makedumpfile -E -d {dump_level} -i /mnt/vmcoreinfo /proc/vmcore /mnt/{name}"
    return f"time cp /proc/vmcore /mnt/{name}"


def after_save(arch: Arch, quirks: Mapping[str, bool], name: str) -> list[str]:
    """What B runs on the saved image after step 7. x86_64: the image's kernel-text
    PT_LOADs, which duplicate RAM PT_LOADs, become PT_NULL so that C's kexec can load it
    (facts, x86_64; quirk drop-kernel-text). i386 images have none: nothing to run."""
    if arch.info.kernel_map is None or not quirks["drop-kernel-text"]:
        return []
    return [f"kj-image drop-kernel-text /mnt/{name}"]


def load_image(quirks: Mapping[str, bool]) -> str:
    """Seed step 9: C loads A's image with A's jump-back entry as the entry point."""
    return f"{kexec(quirks)} -l --args-none --entry=$(cat /mnt/kexec_jump_back_entry) /mnt/dump.elf"


def load_jump_back(quirks: Mapping[str, bool], entry: str) -> str:
    """B's way back to A: the lab's own kj-jump-back, or kexec-tools' helper (which fails on
    today's kernels, facts item 7)."""
    if quirks["own-jump-back-helper"]:
        return f"kj-jump-back {entry}"
    return f"{kexec(quirks)} --load-jump-back-helper --entry={entry}"


def load_reboot_kernel(quirks: Mapping[str, bool]) -> str:
    """Seed 001: a plain kexec -l of a new kernel."""
    return f"{kexec(quirks)} -l /boot/bzImage --initrd=/boot/rootfsB.gz --append='console=ttyS0 loglevel=7 kjlab.role=R'"


def load_physcall(quirks: Mapping[str, bool]) -> str:
    """Seed 003: the physical-mode program, preserving context so it can return."""
    lo, hi = PHYSCALL_WINDOW
    return f"{kexec(quirks)} --load-preserve-context --mem-min={lo:#x} --mem-max={hi:#x} --args-none /boot/kj-physcall.elf"
