"""Physical address ranges: [start, end) in bytes, their algebra and their JSON form.
Granularity is the 4 KiB page."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAGE_SIZE = 4096
PAGE_SHIFT = 12
WORDS64 = PAGE_SIZE // 8
CHUNK_BYTES = 64 << 20  # bytes compared or scanned per numpy operation
ADDR_LIMIT = 1 << 64

Range = tuple[int, int]  # [start, end) in bytes

# -- ranges -----------------------------------------------------------------------------


def normalize_ranges(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Sorted, non-empty, non-overlapping; touching ranges merged."""
    out: list[Range] = []
    for s, e in sorted((int(s), int(e)) for s, e in ranges if int(e) > int(s)):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def intersect_ranges(a: Iterable[Sequence[int]], b: Iterable[Sequence[int]]) -> list[Range]:
    a_n, b_n = normalize_ranges(a), normalize_ranges(b)
    out: list[Range] = []
    i = j = 0
    while i < len(a_n) and j < len(b_n):
        s, e = max(a_n[i][0], b_n[j][0]), min(a_n[i][1], b_n[j][1])
        if s < e:
            out.append((s, e))
        if a_n[i][1] < b_n[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract_ranges(a: Iterable[Sequence[int]], b: Iterable[Sequence[int]]) -> list[Range]:
    """The parts of `a` outside every range of `b`."""
    out: list[Range] = []
    cuts = normalize_ranges(b)
    for s, e in normalize_ranges(a):
        k = bisect.bisect_right(cuts, (s, ADDR_LIMIT)) - 1
        k = max(k, 0)
        while s < e and k < len(cuts):
            cs, ce = cuts[k]
            if ce <= s:
                k += 1
                continue
            if cs >= e:
                break
            if cs > s:
                out.append((s, cs))
            s = max(s, ce)
            k += 1
        if s < e:
            out.append((s, e))
    return out


def pages_out(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Every page a range touches (start rounded down, end rounded up)."""
    mask = PAGE_SIZE - 1
    return normalize_ranges((int(s) & ~mask, (int(e) + mask) & ~mask) for s, e in ranges)


def ranges_bytes(ranges: Iterable[Sequence[int]]) -> int:
    return sum(int(e) - int(s) for s, e in ranges)


def ranges_pages(ranges: Iterable[Sequence[int]]) -> int:
    return ranges_bytes(pages_out(ranges)) >> PAGE_SHIFT


def pages_to_ranges(page_numbers: np.ndarray) -> list[Range]:
    """Coalesce page numbers (any order, duplicates allowed) into byte ranges."""
    p = np.unique(np.asarray(page_numbers, dtype=np.int64))
    if p.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(p) != 1)
    starts = np.concatenate(([p[0]], p[breaks + 1]))
    ends = np.concatenate((p[breaks], [p[-1]])) + 1
    return [(int(s) << PAGE_SHIFT, int(e) << PAGE_SHIFT) for s, e in zip(starts, ends)]


def addresses_to_ranges(addresses: Iterable[int]) -> list[Range]:
    """Coalesce the pages holding these physical addresses into byte ranges."""
    return pages_to_ranges(np.fromiter(addresses, np.int64) >> PAGE_SHIFT)


def format_range(r: Sequence[int]) -> str:
    return f"0x{int(r[0]):x}-0x{int(r[1]):x}"


def ranges_to_json(ranges: Sequence[Sequence[int]], limit: int | None = None) -> dict[str, Any]:
    """{"count", "bytes", "ranges": [{"range": "0x..-0x..", "size": n}], "omitted"}."""
    shown = ranges if limit is None else ranges[:limit]
    return {
        "count": len(ranges),
        "bytes": ranges_bytes(ranges),
        "ranges": [{"range": format_range(r), "size": int(r[1]) - int(r[0])} for r in shown],
        "omitted": len(ranges) - len(shown),
    }


def compact_indices(indices: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"."""
    idx = sorted(set(int(i) for i in indices))
    parts: list[str] = []
    k = 0
    while k < len(idx):
        j = k
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[k]) if j == k else f"{idx[k]}-{idx[j]}")
        k = j + 1
    return ",".join(parts)


