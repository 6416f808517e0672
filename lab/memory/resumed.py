"""Every page of A, at the moment A runs again: the last leg of the round-trip proof.

The chain of lab.memory.roundtrip proves the pages the image holds (departure = in B =
on the disk = return). This leg takes A's memory when A's own code runs again - the
guest stopped at the first function A calls once machine_kexec() has returned from
relocate_kernel (paging on, interrupts off, one CPU) - and proves every page of A's RAM
from 0 to its end against A at departure:

- a page of B's window (a kexec destination) must hold what its source page held at
  departure: relocate_kernel swapped A's page out there and has swapped it back;
- a kexec source page must hold what its destination held at the return (B's state,
  kept for the next jump);
- every other page must be as it was at departure. One that is not was either changed
  while A was away (in the low 1 MiB: named by its owner, lab.memory.low_memory;
  elsewhere a loss) or written by A itself after it took control back (its kernel stack,
  kexec's control and swap pages, its own variables: named and counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..symbols import SymbolMap
from .image import PhysImage
from .kexec_pages import KexecListUnreadable, KexecPages, kexec_pages, swap_page
from .low_memory import LOW_END, LowMemoryLayout, LowPage, changed_low_pages
from .ranges import PAGE_SIZE, Range, addresses_to_ranges, format_range, intersect_ranges, normalize_ranges
from .record import LowMemoryRecord, OwnWrite, ResumedLegRecord

CHUNK = 16 << 20  # pages compared at a time (a 6 GiB PAE guest must not need 6 GiB of host RAM)


@dataclass(frozen=True)
class ResumedMoment:
    """Where A was stopped when it ran again: the snapshot and the machine's state there."""

    snapshot: Path
    stack_pointer: int | None  # the stopped CPU's SP (a virtual address of A's)
    control_page: int | None  # kexec's control page (holds A's jump-back entry)
    stop_symbol: str  # the function the guest stopped at
    entry_stack_pointer: int | None = None  # SP at A's jump-back entry (physical: the peer's stack)


@dataclass
class ResumedProof:
    a_end: int
    pages: int = 0
    equal: int = 0
    # Each page of A's RAM counts once: equal, window_back, sources_kept, low, own_writes,
    # left_out_by_image or lost (or in swap_problems)
    window_back: int = 0  # A's pages of B's window holding A's page again
    sources_kept: int = 0  # pages of kexec's list as the swap back left them (B's state for the next jump)
    swap_problems: list[str] = field(default_factory=list)
    low: list[LowPage] = field(default_factory=list)
    own_writes: list[tuple[int, str]] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # changed while A was away, outside low memory
    left_out_by_image: list[int] = field(default_factory=list)  # excluded from the image (makedumpfile)
    missing: list[str] = field(default_factory=list)

    @property
    def low_used(self) -> list[LowPage]:
        return [p for p in self.low if p.owner.used_after_resume]

    @property
    def problems(self) -> list[str]:
        out = list(self.missing) + self.swap_problems
        if self.lost:
            out.append(f"{len(self.lost)} pages of A changed while A was away and were not given back: "
                       + ", ".join(format_range(r) for r in addresses_to_ranges(self.lost)[:6]))
        out += [p.line() for p in self.low_used]
        return out

    @property
    def holds(self) -> bool:
        return not self.problems

    def headline(self) -> str:
        if self.missing:
            return "A's memory when it ran again was not proven: " + "; ".join(self.missing)
        named = len(self.low) + len(self.own_writes) + len(self.left_out_by_image)
        unnamed = sum(1 for _, what in self.own_writes if what.startswith("unnamed"))
        return (f"every page of A's RAM from 0 to {self.a_end >> 20} MiB ({self.pages} pages) when A ran again: "
                f"{self.equal + self.window_back} equal to A before the jump ({self.window_back} of them swapped "
                f"back into B's window), {self.sources_kept} kexec pages as the swap back left them, "
                f"{named} changed and named{f' ({unnamed} only as written by A after its return)' if unnamed else ''}, "
                f"{len(self.lost) + len(self.swap_problems)} lost")

    def record(self) -> ResumedLegRecord:
        return ResumedLegRecord(
            summary=self.headline(), ok=self.holds, pages=self.pages, equal=self.equal,
            window_back=self.window_back, sources_kept=self.sources_kept,
            low_memory=LowMemoryRecord(pages_compared=LOW_END // PAGE_SIZE,
                                       changed=tuple(p.line() for p in self.low),
                                       owners=tuple(p.owner.name for p in self.low),
                                       used_after_resume=len(self.low_used)),
            own_writes=tuple(OwnWrite(a, what) for a, what in self.own_writes),
            lost=tuple(addresses_to_ranges(self.lost)),
            left_out_by_image=tuple(addresses_to_ranges(self.left_out_by_image)),
            problems=tuple(self.problems), missing=tuple(self.missing),
        )


def prove_resumed(departure: Path, ret: Path, moment: ResumedMoment, a_ram: Sequence[Range],
                  layout: LowMemoryLayout, symbols: SymbolMap, zero_filled: Sequence[Range] = ()) -> ResumedProof:
    """A at departure against A running again, every page of `a_ram`."""
    ranges = normalize_ranges(a_ram)
    proof = ResumedProof(a_end=ranges[-1][1] if ranges else 0)
    with PhysImage.open(departure) as dep, PhysImage.open(ret) as back, PhysImage.open(moment.snapshot) as res:
        try:
            pages = kexec_pages(res, symbols)
        except KexecListUnreadable as e:
            proof.missing.append(f"kexec's page list could not be read from A's memory: {e}")
            return proof
        writes = _own_write_names(moment, res, symbols)
        for dest, src in pages.pairs:  # a write into a window page before the swap back is in its source page after
            if dest in writes and src not in writes:
                writes[src] = f"{writes[dest]}; written before the swap back, which moved it to kexec's page {src:#x}"
        _check_swapped(proof, pages, dep, back, res, writes, symbols)
        moved = {d for d, _ in pages.pairs} | {s for _, s in pages.pairs}
        excluded = normalize_ranges(zero_filled)
        for start, end in ranges:
            for lo in range(start, end, CHUNK):
                hi = min(end, lo + CHUNK)
                _compare_chunk(proof, lo, hi, dep, back, res, moved, writes, symbols, excluded)
        low_changed = {p for p in proof.lost if p < LOW_END}
        if low_changed:
            named = {p.address: p for p in changed_low_pages(dep, res, layout)}
            proof.low = [named[a] for a in sorted(low_changed) if a in named]
            proof.lost = [a for a in proof.lost if a not in named]
    return proof


def _check_swapped(proof: ResumedProof, pages: KexecPages, dep: PhysImage, back: PhysImage, res: PhysImage,
                   writes: dict[int, str], symbols: SymbolMap) -> None:
    """relocate_kernel swaps each (destination, source) pair in list order, on the way out
    and again on the way back (a source page may be another pair's destination, or its own).
    A's own pages of the window (destinations that are no source) must hold what they held
    before the jump - the departure with the swaps undone, last first; every page of the
    list must hold what the return's memory becomes by the swaps."""
    before_jump = _swapped(dep, pages.pairs[::-1])
    after_swap = _swapped(back, pages.pairs)
    sources = {s for _, s in pages.pairs}
    for dest in dict.fromkeys(d for d, _ in pages.pairs):
        if dest in sources:
            continue
        if _bytes(res, dest) == before_jump[dest]:
            proof.window_back += 1
        elif after_swap[dest] == before_jump[dest]:  # swapped back whole; A wrote it since
            kimage = "A's struct kimage (machine_kexec() stores image->start on return)"
            proof.own_writes.append((dest, writes.get(dest) or (kimage if dest == pages.kimage & ~(PAGE_SIZE - 1)
                                                                 else _symbol_name(symbols, dest))))
        else:
            proof.swap_problems.append(f"page {dest:#x} of B's window does not hold A's page back")
    for page, expect in after_swap.items():
        if page not in sources:  # A's own pages of the window: above
            continue
        if _bytes(res, page) == expect:
            proof.sources_kept += 1
        elif page in writes:
            proof.own_writes.append((page, writes[page]))
        else:
            proof.swap_problems.append(f"kexec's page {page:#x} does not hold what the swap back left there")
    if len(proof.swap_problems) > 20:
        proof.swap_problems[20:] = [f"... ({len(proof.swap_problems) - 20} more not listed)"]


def _swapped(img: PhysImage, pairs: Sequence[tuple[int, int]]) -> dict[int, bytes]:
    """The pages of the list after swapping each pair in the order given, from `img`."""
    pages: dict[int, bytes] = {}
    for dest, src in pairs:
        a = pages[dest] if dest in pages else _bytes(img, dest)
        b = pages[src] if src in pages else _bytes(img, src)
        pages[dest], pages[src] = b, a
    return pages


def _bytes(img: PhysImage, addr: int) -> bytes:
    return img.pages(addr, addr + PAGE_SIZE).tobytes()


def _compare_chunk(proof: ResumedProof, lo: int, hi: int, dep: PhysImage, back: PhysImage, res: PhysImage,
                   moved: set[int], writes: dict[int, str], symbols: SymbolMap, excluded: list[Range]) -> None:
    present = dep.present_mask(lo, hi) & res.present_mask(lo, hi)
    if not present.all():
        absent = [lo + int(i) * PAGE_SIZE for i in np.flatnonzero(~present)]
        proof.missing.append(f"{len(absent)} pages of A's RAM absent from a snapshot: "
                             + ", ".join(format_range(r) for r in addresses_to_ranges(absent)[:4]))
    a = dep.pages(lo, hi)
    b = res.pages(lo, hi)
    differ = np.any(a != b, axis=1) & present
    kexec = np.zeros_like(present)
    for page in moved:
        if lo <= page < hi:
            kexec[(page - lo) // PAGE_SIZE] = True
    proof.pages += int(present.sum())
    proof.equal += int((present & ~differ & ~kexec).sum())
    for n in np.flatnonzero(differ):
        addr = lo + int(n) * PAGE_SIZE
        if addr in moved:
            continue
        if _equal(back, addr, dep, addr):  # as at departure when A got control back: A wrote it since
            proof.own_writes.append((addr, writes.get(addr) or _symbol_name(symbols, addr)))
        elif intersect_ranges([(addr, addr + PAGE_SIZE)], excluded):
            proof.left_out_by_image.append(addr)
        else:
            proof.lost.append(addr)


def _own_write_names(moment: ResumedMoment, res: PhysImage, symbols: SymbolMap) -> dict[int, str]:
    """Pages A writes between its return and the stop, by what they are."""
    info = symbols.arch.info
    names: dict[int, str] = {}
    if moment.control_page is not None:
        names[moment.control_page] = "kexec's control page (relocate_kernel's code, data and stack)"
        swap = swap_page(res, moment.control_page, info.elf_class // 8)
        if swap is not None:
            names[swap] = "kexec's swap page (relocate_kernel's buffer for swapping pages)"
    if moment.entry_stack_pointer and moment.entry_stack_pointer < 1 << 40:  # physical there (identity mapping)
        # the jump-back code calls once on the peer's stack, then takes its own
        names[(moment.entry_stack_pointer - 1) & ~(PAGE_SIZE - 1)] = (
            f"the stack the jump back came with (SP {moment.entry_stack_pointer:#x} at A's jump-back entry): "
            "relocate_kernel pushes a return address there before it takes its own stack")
    if moment.stack_pointer is not None and 0 <= moment.stack_pointer - info.direct_map < info.direct_map_size:
        thread_size = 8192 if info.elf_class == 32 else 16384
        base = (moment.stack_pointer & ~(thread_size - 1)) - info.direct_map
        for page in range(base, base + thread_size, PAGE_SIZE):
            names[page] = f"A's kernel stack (the task that ran kexec -e; SP {moment.stack_pointer:#x})"
    return names


def _symbol_name(symbols: SymbolMap, addr: int) -> str:
    """A page of A's kernel by the symbols it holds, or 'unnamed'."""
    first = symbols.lookup_physical(addr)
    last = symbols.lookup_physical(addr + PAGE_SIZE - 1)
    if first is None and last is None:
        return "unnamed: written by A after its return"
    return f"A's own variables ({first} .. {last})"


def _equal(a: PhysImage, a_addr: int, b: PhysImage, b_addr: int) -> bool:
    if not (a.present_mask(a_addr, a_addr + PAGE_SIZE)[0] and b.present_mask(b_addr, b_addr + PAGE_SIZE)[0]):
        return False
    return bool(np.array_equal(a.pages(a_addr, a_addr + PAGE_SIZE), b.pages(b_addr, b_addr + PAGE_SIZE)))
