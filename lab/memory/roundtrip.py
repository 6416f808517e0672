"""The exact proof of a hibernation round trip, page by page.

Four pictures of kernel A's memory, each taken when A cannot change it:
- departure: the guest stopped at the first instruction of the image A jumps into;
- in B: kernel B's memory snapshot, before it saves A's memory;
- on the disk: the image B saved, read back on the host;
- return: the guest stopped at A's jump-back entry, before A runs one instruction.

Every page the image holds outside the low 1 MiB and B's window must be the same in
all four. A's own pages of B's window are in that set: kexec swapped them into its
source pages (outside the window) before the jump and swaps them back after the
return, so proving the source pages proves A's window pages. What is left out is
listed with the reason (RoundTripProof.left_out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..symbols import SymbolMap
from .diff import diff_ranges
from .image import PhysImage
from .ranges import PAGE_SIZE, Range, format_range, normalize_ranges, ranges_pages, subtract_ranges
from .record import LeftOutRange, ProofLeg, RoundTripRecord

LOW_MEMORY: Range = (0, 0x100000)
# The legs of the chain. The first says whether B kept out of A's memory; the other two
# whether the image held A's memory and came back whole.
DEPARTURE_IN_B, IN_B_ON_DISK, ON_DISK_RETURN = "departure = in B", "in B = on the disk", "on the disk = return"
FIRST_BYTES = 16  # bytes shown on each side of a differing page


@dataclass(frozen=True)
class PageDiff:
    """One differing page: where, the first differing byte, what each side holds there."""

    address: int
    offset: int
    a_bytes: str
    b_bytes: str
    symbol: str | None

    def line(self) -> str:
        where = f" ({self.symbol})" if self.symbol else ""
        return (f"page {self.address:#010x}{where}: first difference at +{self.offset:#05x}: "
                f"{self.a_bytes} != {self.b_bytes}")


@dataclass(frozen=True)
class Leg:
    """One comparison of the chain, e.g. departure = in B."""

    name: str
    a: str
    b: str
    pages_compared: int
    differing: tuple[Range, ...]
    examples: tuple[PageDiff, ...]
    pages_in_domain: int = 0  # what it should compare: a page absent from either side is not proven

    @property
    def pages_differing(self) -> int:
        return ranges_pages(self.differing)

    @property
    def holds(self) -> bool:
        return 0 < self.pages_compared == self.pages_in_domain and not self.differing

    def summary(self) -> str:
        if self.holds:
            return f"{self.name}: all {self.pages_compared} pages identical"
        if self.pages_compared != self.pages_in_domain:
            return (f"{self.name}: {self.pages_compared} of {self.pages_in_domain} pages present on both sides"
                    f"{f', {self.pages_differing} differ' if self.differing else ''}")
        shown = ", ".join(format_range(r) for r in self.differing[:4])
        more = f" (+{len(self.differing) - 4} more ranges)" if len(self.differing) > 4 else ""
        return f"{self.name}: {self.pages_differing} of {self.pages_compared} pages differ: {shown}{more}"


@dataclass
class RoundTripProof:
    """The chain departure = in B = on the disk = return, over the proof domain."""

    domain: list[Range]
    legs: list[Leg] = field(default_factory=list)
    left_out: list[tuple[Range, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # moments that were never captured

    @property
    def pages_in_domain(self) -> int:
        return ranges_pages(self.domain)

    @property
    def complete(self) -> bool:
        return not self.missing and len(self.legs) == 3

    @property
    def proven(self) -> bool:
        return self.complete and all(leg.holds for leg in self.legs)

    @property
    def failed_legs(self) -> list[Leg]:
        return [leg for leg in self.legs if not leg.holds]

    def record(self) -> RoundTripRecord:
        """The proof as the run's record keeps it (the first 200 differing ranges of a leg)."""
        return RoundTripRecord(
            domain=tuple(self.domain),
            pages_in_domain=self.pages_in_domain,
            proven=self.proven,
            complete=self.complete,
            missing=tuple(self.missing),
            legs=tuple(ProofLeg(leg.name, leg.a, leg.b, leg.pages_compared, leg.pages_differing, leg.holds,
                                leg.differing[:200], tuple(e.line() for e in leg.examples)) for leg in self.legs),
            left_out=tuple(LeftOutRange((s, e), (e - s) // PAGE_SIZE, why) for (s, e), why in self.left_out),
        )


def proof_domain(image: PhysImage, b_window: tuple[int, int]) -> list[Range]:
    """The pages of A the chain proves: all the image holds, less low memory and the window."""
    window = (b_window[0], b_window[1] + 1)
    return subtract_ranges(image.file_backed_ranges(), [LOW_MEMORY, window])


def left_out(a_ram: Sequence[Range], domain: list[Range], b_window: tuple[int, int],
             zero_filled: Sequence[Range] = ()) -> list[tuple[Range, str]]:
    """What of A's RAM (`a_ram`: its physical ranges; no PCI hole, which is no one's
    memory) the proof leaves out, and why."""
    a_ram = normalize_ranges(a_ram)
    a_ram_end = a_ram[-1][1] if a_ram else 0
    window = (b_window[0], min(b_window[1] + 1, a_ram_end))
    out: list[tuple[Range, str]] = [
        (LOW_MEMORY, "the low 1 MiB: B and C both run there (memmap=640K@0K) and B's vmcore does not save it"),
        (window, "B's window: it holds kernel B; A's own pages of it travel in kexec's source pages, "
                 "which are inside the proven pages"),
    ]
    excluded = subtract_ranges(zero_filled, [LOW_MEMORY, window])
    out += [(r, "left out of the image (makedumpfile excluded it: it reads as zeros and is not restored)")
            for r in excluded]
    rest = subtract_ranges(a_ram, [*domain, LOW_MEMORY, window, *excluded])
    out += [(r, "not in the saved image") for r in rest]
    return out


def compare(name: str, a: PhysImage, b: PhysImage, domain: list[Range],
            symbols: SymbolMap | None = None, examples: int = 8) -> Leg:
    """One leg: a and b page by page over `domain`; the first differing pages described."""
    diff = diff_ranges(a, b, only=domain)
    found: list[PageDiff] = []
    for start, end in diff.differing:
        for addr in range(start, end, PAGE_SIZE):
            if len(found) >= examples:
                break
            found.append(describe_page(a, b, addr, symbols))
    return Leg(name, a.path.name, b.path.name, diff.pages_compared, tuple(diff.differing), tuple(found),
               ranges_pages(domain))


def describe_page(a: PhysImage, b: PhysImage, addr: int, symbols: SymbolMap | None) -> PageDiff:
    pa = a.pages(addr, addr + PAGE_SIZE, copy=True).reshape(-1)
    pb = b.pages(addr, addr + PAGE_SIZE, copy=True).reshape(-1)
    idx = np.flatnonzero(pa != pb)
    off = int(idx[0]) if idx.size else 0
    lo = max(0, off - 4)
    symbol = symbols.lookup_physical(addr + off) if symbols else None
    return PageDiff(addr, off, pa[lo:lo + FIRST_BYTES].tobytes().hex(" "), pb[lo:lo + FIRST_BYTES].tobytes().hex(" "),
                    symbol)


def prove_round_trip(departure: Path | None, in_b: Path, image: Path, ret: Path | None,
                     b_window: tuple[int, int], a_ram: Sequence[Range],
                     symbols: SymbolMap | None = None) -> RoundTripProof:
    """departure = in B = on the disk = return over the proof domain. A moment that was
    not captured (the guest never reached it) leaves its legs out and is listed."""
    with PhysImage.open(image) as img, PhysImage.open(in_b) as b:
        domain = normalize_ranges(proof_domain(img, b_window))
        proof = RoundTripProof(domain, left_out=left_out(a_ram, domain, b_window, img.zero_fill_ranges()))
        if departure is None:
            proof.missing.append("departure: the guest never reached the entry of the image A jumps into")
        else:
            with PhysImage.open(departure) as dep:
                proof.legs.append(compare(DEPARTURE_IN_B, dep, b, domain, symbols))
        proof.legs.append(compare(IN_B_ON_DISK, b, img, domain, symbols))
        if ret is None:
            proof.missing.append("return: the guest never reached A's jump-back entry")
        else:
            with PhysImage.open(ret) as back:
                proof.legs.append(compare(ON_DISK_RETURN, img, back, domain, symbols))
    return proof
