"""Proof by memory: the checks that compare snapshots, the saved image and the sentinel
pages of a run, and the memory map of the report. Pure host-side work on files.

- image check (after B powered off): every sentinel page of A must be in the saved image,
  intact (it may sit elsewhere: pages of B's window live in kexec's swap pages while B
  runs); and every page the image holds must equal A's memory as B's snapshot shows it,
  outside B's window. Pages a makedumpfile image leaves out (zero-filled tails) are
  listed apart: leaving free pages out is fine, leaving a sentinel page out is not.
- resume check (A after resume against A before the jump): every sentinel page intact at
  the same physical address; which ranges changed, for the map.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from .diff import diff_ranges
from .image import PhysImage
from .memmap import class_page_counts, memory_map
from .ranges import Range, addresses_to_ranges, compact_indices, format_range, normalize_ranges, ranges_to_json
from .record import ImageCheck, MemoryMap, ResumeCheck
from .sentinels import REGIONS, SentinelCheck, check_sentinels, scan_sentinels

log = logging.getLogger(__name__)

LOW_MEMORY = (0, 0x100000)  # B uses A's low 640 KiB too (memmap=640K@0K)


def run_token(run_id: str) -> int:
    """The u64 that marks this run's sentinel pages (so another run's pages never count)."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:16], 16)


@dataclass(frozen=True)
class SentinelPlan:
    token: int
    seed: int
    pages: int  # per region (tmpfs file, anonymous memory)

    @property
    def expected(self) -> dict[int, int]:
        return {region: self.pages for region in REGIONS} if self.pages else {}


R = TypeVar("R", ImageCheck, ResumeCheck)


@dataclass
class Finding(Generic[R]):
    """A check's outcome: its record for results (lab.memory.record), problems (each one
    line of evidence) and the physical ranges the map shows."""

    record: R
    problems: list[str] = field(default_factory=list)
    bad_ranges: list[Range] = field(default_factory=list)  # damaged
    changed_ranges: list[Range] = field(default_factory=list)  # changed (the resume check)


def _ranges_text(ranges: list[tuple[int, int]], limit: int = 6) -> str:
    shown = ", ".join(format_range(r) for r in ranges[:limit])
    return shown + (f" (+{len(ranges) - limit} more)" if len(ranges) > limit else "")


def check_image(image: Path, b_snapshot: Path, a_before: Path, plan: SentinelPlan,
                b_window: tuple[int, int], highmem: tuple[int, int] | None = None) -> Finding[ImageCheck]:
    """`highmem`: A's HighMem zone; where it is known, the record's sentinels_in_highmem
    counts the sentinel pages A had there before the jump (they travel as pages above lowmem)."""
    window = (b_window[0], b_window[1] + 1)
    with PhysImage.open(image) as img, PhysImage.open(b_snapshot) as bsnap, PhysImage.open(a_before) as before:
        diff = diff_ranges(img, bsnap, exclude=[LOW_MEMORY, window], only=img.file_backed_ranges())
        f = Finding(ImageCheck(image=img.to_json(), image_vs_b_snapshot=diff.to_json(limit=200),
                               left_out=ranges_to_json(img.zero_fill_ranges(), 200)))
        if diff.pages_differing:
            f.problems.append(f"{diff.pages_differing} pages of the image differ from A's memory as kernel B "
                              f"saw it: {_ranges_text(diff.differing)}")
            f.bad_ranges += diff.differing
        if plan.pages:
            was = scan_sentinels(before, plan.token)
            got = scan_sentinels(img, plan.token)
            if highmem is not None:
                f.record = replace(f.record, sentinels_in_highmem={
                    "zone": format_range(highmem), **was.within(*highmem), "of": sum(plan.expected.values())})
            chk = check_sentinels(was, got, plan.expected, moved_ok=True)
            f.record = replace(f.record, sentinels_in_image=chk.to_json(limit=200))
            for region, g in chk.missing.items():  # g.ranges: where A had them before the jump
                f.problems.append(f"{len(g.indices)} {region} sentinel pages lost in the image "
                                  f"(indices {_indices(g.indices)}; A had them at {_ranges_text(g.ranges)})")
                f.bad_ranges += g.ranges
            for region, g in chk.corrupted.items():  # g.ranges: where the image holds them
                f.problems.append(f"{len(g.indices)} {region} sentinel pages corrupted in the image "
                                  f"(indices {_indices(g.indices)}; image pages at {_ranges_text(g.ranges)})")
                f.bad_ranges += g.ranges
            _damaged_headers(f, chk, "in the image")
    return f


def _damaged_headers(f: Finding[Any], chk: SentinelCheck, where: str) -> None:
    """Pages that held a sentinel page before the jump and now carry this run's magic with a
    broken header: A's data was hit there (broken headers elsewhere are stale copies)."""
    if chk.damaged_headers:
        ranges = addresses_to_ranges(chk.damaged_headers)
        f.problems.append(f"{len(chk.damaged_headers)} sentinel pages with a damaged header {where} "
                          f"(at {_ranges_text(ranges)})")
        f.bad_ranges += ranges


def check_resume(a_before: Path, a_after: Path, plan: SentinelPlan) -> Finding[ResumeCheck]:
    with PhysImage.open(a_before) as before, PhysImage.open(a_after) as after:
        diff = diff_ranges(before, after)
        f = Finding(ResumeCheck(changed=diff.to_json(limit=200)), changed_ranges=diff.differing)
        if plan.pages:
            chk = check_sentinels(scan_sentinels(before, plan.token), scan_sentinels(after, plan.token), plan.expected)
            f.record = replace(f.record, sentinels_after_resume=chk.to_json(limit=200), sentinel_summary=chk.summary())
            for kind, groups in (("missing", chk.missing), ("corrupted", chk.corrupted), ("moved", chk.moved)):
                for region, g in groups.items():
                    f.problems.append(f"{len(g.indices)} {region} sentinel pages {kind} after resume "
                                      f"(indices {_indices(g.indices)}; at {_ranges_text(g.from_ranges or g.ranges)})")
                    f.bad_ranges += g.from_ranges or g.ranges
            _damaged_headers(f, chk, "after resume")
    return f


def sentinel_ranges(snapshot: Path, plan: SentinelPlan) -> list[tuple[int, int]]:
    with PhysImage.open(snapshot) as img:
        return scan_sentinels(img, plan.token).ranges()


def memory_view(total_bytes: int, present: list[tuple[int, int]], bad: list[tuple[int, int]],
                changed: list[tuple[int, int]], sentinels: list[tuple[int, int]],
                b_window: tuple[int, int], cells: int = 1024,
                proven: list[tuple[int, int]] | None = None) -> MemoryMap:
    """The report's picture of A's physical memory: one class per cell, counts per class.
    `proven`: pages the round-trip proof showed identical at all four moments."""
    classes = {
        "corrupted": normalize_ranges(bad),
        "changed": normalize_ranges(changed),
        "sentinel": normalize_ranges(sentinels),
        "proven": normalize_ranges(proven or []),
        "b_window": [(b_window[0], b_window[1] + 1)],
        "unchanged": normalize_ranges(present),
    }
    return MemoryMap(
        total_bytes=total_bytes,
        cells=tuple(memory_map(total_bytes, classes, cells)),
        page_counts=class_page_counts(total_bytes, classes),
        bytes_per_cell=total_bytes // cells,
    )


def _indices(indices: list[int]) -> str:
    text = compact_indices(indices)
    return text if len(text) < 80 else text[:77] + "..."
