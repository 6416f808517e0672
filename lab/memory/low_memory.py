"""The low 1 MiB of kernel A: who owns each page, and what a change there means.

kexec-tools gives kernels B and C the low 640 KiB as RAM (memmap=640K@0K) and, for a
preserve-context image, backs nothing up there; B's vmcore does not save it either. So a
page below 1 MiB that differs between A before the jump and A running again is a real
change made by B, C or their firmware, and whether it matters depends on whose page it
is in A:

- A's real-mode area (the trampoline that starts the other CPUs, the ACPI S3 wakeup code;
  on i386 also BIOS reboot): from A's own memory (`real_mode_header`) and symbols (the
  blob's size). A uses it again when it brings a CPU up: on an SMP machine a change
  there is a failure (fix 0005's bug, `scenarios/bugs/x86_64-smp-real-mode-trampoline`).
- Page 0 (the real-mode interrupt table, the BIOS data area), the EBDA and the BIOS ROM
  area (e820 reserved): the firmware's; C's firmware rewrote them at C's boot. A reads
  them at boot only.
- VGA memory (0xa0000-0xbffff): device memory, the text screen.
- Pages A kept out of its page allocator (the whole first 1 MiB from 5.13 on, commit
  f1d4d47c5851; `reservelow`, 64 KiB by default, before): A does not use them after boot.
- Any other page was A's page allocator's: it may hold A's data, so a change is a failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..symbols import SymbolMap
from .image import PhysImage
from .kexec_pages import KexecListUnreadable, read_word
from .ranges import PAGE_SIZE, Range, intersect_ranges, normalize_ranges, subtract_ranges

LOW_END = 0x100000
VGA = (0xA0000, 0xC0000)
ROM = (0xC0000, 0x100000)
BDA_EBDA_SEGMENT = 0x40E
DEFAULT_RESERVE_LOW = 64 << 10  # CONFIG_X86_RESERVE_LOW's default
RESERVES_FIRST_MIB_FROM = (5, 13)
E820_RAM = ("usable", "System RAM")  # how 5.10-6.x and 7.x print an e820 RAM entry

_E820 = re.compile(r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (.+?)\s*$", re.M)
_RESERVELOW = re.compile(r"\breservelow=(\d+)([KkMm]?)\b")


@dataclass(frozen=True)
class Owner:
    """Whose a low page is in A, whether A uses it after the resume on this machine, and why."""

    name: str
    used_after_resume: bool
    why: str


@dataclass(frozen=True)
class LowMemoryLayout:
    """What the lab knows of A's low 1 MiB: from A's boot log, symbols and memory."""

    e820: tuple[tuple[Range, str], ...]  # the firmware's map as A's boot log printed it
    real_mode: Range | None  # A's real-mode area, None when A's memory does not say
    ebda: int | None  # the EBDA's start (the BIOS data area's word at 0x40e, times 16)
    reserved_to: int  # A keeps [0, reserved_to) out of its page allocator
    reserved_why: str
    cpus: int
    cmdline: str = ""  # A's command line: a page holding it is the boot loader's copy

    def owner(self, page: int) -> Owner:
        """The owner of the page at `page` (below 1 MiB)."""
        if self.real_mode and self.real_mode[0] <= page < self.real_mode[1]:
            if self.cpus > 1:
                return Owner("A's real-mode area", True, f"A starts its other CPUs through it (this machine has "
                             f"{self.cpus}): the trampoline runs there when they come back up after the resume")
            return Owner("A's real-mode area", False, "used to start other CPUs and for ACPI S3 wakeup; this machine "
                         "has one CPU and the flow does not suspend to RAM (a finding: SMP would use it)")
        if page < PAGE_SIZE:
            return Owner("page 0 (real-mode IVT, BIOS data area)", False,
                         "the firmware's; C's BIOS rewrote it at C's boot; A reads it at boot only")
        if VGA[0] <= page < VGA[1]:
            return Owner("VGA memory", False, "device memory (the text screen), not RAM A keeps data in")
        if ROM[0] <= page < ROM[1]:
            return Owner("BIOS ROM area", False, "option ROMs and the F-segment's firmware tables (MP, SMBIOS, "
                         "RSDP), e820 reserved: written by C's firmware at C's boot; A reads them at boot only")
        if self.ebda is not None and self.ebda < page + PAGE_SIZE and page < VGA[0]:  # the page it starts in too
            return Owner("EBDA", False, "the firmware's extended BIOS data area (e820 reserved); A does not use it "
                         "after boot")
        kind = self.e820_type(page)
        if kind is not None and kind not in E820_RAM:
            return Owner(f"e820 {kind}", False, "the firmware's, not A's RAM")
        if page < self.reserved_to:
            return Owner("reserved by A, unused", False, f"kept out of A's page allocator ({self.reserved_why}) and "
                         "not used by A after boot; B and C ran there")
        return Owner("A's page allocator", True, f"A's free or used memory ({self.reserved_why}): "
                     "it may hold A's data")

    def e820_type(self, page: int) -> str | None:
        for (start, end), kind in self.e820:
            if start <= page < end:
                return kind
        return None


def parse_e820(boot_log: str, source: str = "BIOS-e820") -> tuple[tuple[Range, str], ...]:
    """A memory map from a kernel's first "BIOS-e820:" lines (A's boot): the firmware's;
    with source "user", the map A made of it with its mem= and memmap= parameters."""
    found: list[tuple[Range, str]] = []
    for m in re.finditer(_E820.pattern.replace("BIOS-e820", re.escape(source)), boot_log, re.M):
        entry = ((int(m.group(1), 16), int(m.group(2), 16) + 1), m.group(3).strip())
        if entry in found:  # the next kernel's boot prints the map again
            break
        found.append(entry)
    return tuple(found)


def a_ram_map(boot_log: str, limit: Sequence[Range]) -> tuple[list[Range], list[Range]]:
    """A's RAM as A itself counts it: the low 1 MiB (A's too, whoever uses it), then the
    usable ranges of A's own map (its "user:" map, made by mem= and memmap=; else the
    firmware's) within `limit`. Returns (A's RAM, what `limit` holds that is not A's RAM:
    e.g. a memmap=SIZE$START reservation)."""
    entries = parse_e820(boot_log, "user") or parse_e820(boot_log)
    if not entries:
        return normalize_ranges(limit), []
    usable = [r for r, kind in entries if kind in E820_RAM]
    ram = normalize_ranges(intersect_ranges(limit, [(0, LOW_END), *usable]))
    return ram, subtract_ranges(limit, ram)


def reserved_low(release: str, cmdline: str) -> tuple[int, str]:
    """How much of the low memory A keeps out of its page allocator, and why."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if m is None or (int(m.group(1)), int(m.group(2))) >= RESERVES_FIRST_MIB_FROM:
        return LOW_END, "A reserves the first 1 MiB (5.13 on)"
    size, why = DEFAULT_RESERVE_LOW, "reservelow 64K, the default"
    for value, unit in _RESERVELOW.findall(cmdline):  # the last one counts, as the kernel parses them
        size = int(value) << {"": 0, "k": 10, "m": 20}[unit.lower()]
        why = f"reservelow={value}{unit}"
    size = min(max(PAGE_SIZE, (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)), 640 << 10)
    return size, f"{release} reserves only the first {size >> 10} KiB ({why})"


def real_mode_area(header: int, symbols: SymbolMap) -> Range | None:
    """A's real-mode area from the value of its `real_mode_header` (a direct-map pointer,
    read from A while A runs: at departure it may lie in B's window, swapped out) and the
    blob's size from A's symbols."""
    info = symbols.arch.info
    blob, blob_end = symbols.address_of("real_mode_blob"), symbols.address_of("real_mode_blob_end")
    start = header - info.direct_map
    if blob is None or blob_end is None or not 0 < start < LOW_END:
        return None
    return start, min(start + blob_end - blob, LOW_END)  # to the byte: a page may hold more than the area


def ebda_start(img: PhysImage) -> int | None:
    try:
        seg = read_word(img, BDA_EBDA_SEGMENT, 2)
    except KexecListUnreadable:
        return None
    start = seg << 4
    return start if 0x80000 <= start < VGA[0] else None


@dataclass(frozen=True)
class LowPage:
    """One page below 1 MiB that changed, with its owner in A."""

    address: int
    owner: Owner
    a_had: str  # "zeros" or "data": what A held there before the jump
    first_difference: str

    def line(self) -> str:
        use = "A uses it after the resume" if self.owner.used_after_resume else "harmless"
        return (f"page {self.address:#07x} ({self.owner.name}; A had {self.a_had} there): {use}: {self.owner.why}; "
                f"{self.first_difference}")


def changed_low_pages(before: PhysImage, after: PhysImage, layout: LowMemoryLayout) -> list[LowPage]:
    """Every page below 1 MiB present in both that differs, named by its owner in A."""
    both = before.present_mask(0, LOW_END) & after.present_mask(0, LOW_END)
    a = before.pages(0, LOW_END, copy=True)
    b = after.pages(0, LOW_END, copy=True)
    differ = np.flatnonzero(both & np.any(a != b, axis=1))
    out = []
    for n in differ:
        pa, pb = a[n], b[n]
        off = int(np.flatnonzero(pa != pb)[0])
        lo = max(0, off - 4)
        first = f"first difference at +{off:#05x}: {pa[lo:lo + 12].tobytes().hex(' ')} != {pb[lo:lo + 12].tobytes().hex(' ')}"
        addr = int(n) * PAGE_SIZE
        owner = layout.owner(addr)
        area = layout.real_mode
        if owner.name == "A's real-mode area" and area is not None:
            lo_b, hi_b = max(area[0], addr) - addr, min(area[1], addr + PAGE_SIZE) - addr
            if not np.any(pa[lo_b:hi_b] != pb[lo_b:hi_b]):  # the change is in the page, not in the area
                rest = replace(layout, real_mode=None).owner(addr)
                owner = replace(rest, name=f"{rest.name} (the page's part beside A's real-mode area; the area's "
                                           f"+{lo_b:#x}..+{hi_b:#x} is unchanged)")
        if not owner.used_after_resume and layout.cmdline and layout.cmdline[:40].encode() in pa.tobytes():
            owner = Owner(f"{owner.name}: the boot loader's copy of A's command line", False,
                          f"{owner.why}; A copied its command line at boot (boot_command_line)")
        out.append(LowPage(addr, owner, "data" if pa.any() else "zeros", first))
    return out


def owners_summary(pages: Sequence[LowPage]) -> str:
    """"9 pages: 1 A's real-mode area, 2 BIOS ROM area, ..." in the order met."""
    counts: dict[str, int] = {}
    for p in pages:
        counts[p.owner.name] = counts.get(p.owner.name, 0) + 1
    return ", ".join(f"{n} {name}" for name, n in counts.items())
