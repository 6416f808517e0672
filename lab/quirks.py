"""The kexec-tools and kernel workarounds of the facts document, as named switches.

Each one is on by default; a scenario turns one off to reproduce the failure it avoids.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quirk:
    name: str
    facts_item: str
    summary: str
    when_off: str


QUIRKS: dict[str, Quirk] = {
    q.name: q
    for q in (
        Quirk("wide-window", "1",
              "B's window reaches past 16 MiB (--mem-max=0x1ffffff): kexec-tools never puts an initrd below 16 MiB",
              "the 2008 --mem-max=0xffffff: 'locate_hole failed'"),
        Quirk("kexec-syscall", "2",
              "pass -c so kexec-tools >= 2.0.27 uses kexec_load, which allows --load-preserve-context",
              "kexec_file_load is tried and refuses preserve-context (newer kexec-tools only)"),
        Quirk("pass-memmap", "3",
              "--pass-memmap-cmdline: B boots with memmap=exactmap restricted to its window",
              "B sees all RAM and overwrites A"),
        Quirk("crash-note", "4",
              "write a valid ELF note into cpu0's crash-notes buffer through /dev/mem before the load",
              "'Zero PT_NOTE entries', no /proc/vmcore in B"),
        Quirk("iomem-filter", "5",
              "hide /proc/iomem ranges below 1 MiB while kexec loads (bind mount)",
              "the BIOS area starts the window: a wrapped 4 GiB vmcore, ENOSPC"),
        Quirk("own-jump-back-helper", "7",
              "B jumps straight back with kj-jump-back (kexec_load of one 4 KiB segment itself)",
              "kexec --load-jump-back-helper: ENOMEM, 'Could not allocate control_code_buffer'"),
        Quirk("drop-kernel-text", "x86_64",
              "x86_64: B turns the saved image's kernel-text PT_LOADs (virtual 0xffffffff8...) into PT_NULL "
              "(kj-image drop-kernel-text); no effect on i386",
              "C's kexec -l of the image: 'Overlapping memory segments'"),
        Quirk("ignore-kexec-e-status", "8",
              "judge the resume by the guest, not by kexec -e's exit status 255",
              "a successful resume is reported as a kexec failure"),
    )
}

DEFAULT_QUIRKS: dict[str, bool] = {name: True for name in QUIRKS}
