"""A coarse picture of physical memory for the report: cells coloured by class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .ranges import PAGE_SHIFT, PAGE_SIZE

# -- memory map -----------------------------------------------------------------------------


def _touched(total: int, n: int, ranges: Sequence[Sequence[int]], unit: int | None) -> np.ndarray:
    """Bool per cell: some range touches it. Cells split [0, total) evenly (unit None) or
    are `unit` bytes each."""
    r = np.asarray([(s, e) for s, e in ranges if e > s and s < total], dtype=np.int64)
    marks = np.zeros(n + 1, dtype=np.int64)
    if r.size:
        s, e = np.clip(r[:, 0], 0, total), np.clip(r[:, 1], 0, total)
        keep = e > s
        s, e = s[keep], e[keep]
        if unit is None and total * n < 1 << 62:  # cell i: [i*total/n, (i+1)*total/n)
            first, last = s * n // total, (e * n + total - 1) // total - 1
        elif unit is None:  # too big for int64: Python ints
            first = np.array([int(x) * n // total for x in s], dtype=np.int64)
            last = np.array([(int(x) * n + total - 1) // total - 1 for x in e], dtype=np.int64)
        else:
            first, last = s // unit, (e - 1) // unit
        np.add.at(marks, first, 1)
        np.add.at(marks, last + 1, -1)
    return np.cumsum(marks[:n]) > 0


def _paint(total: int, n: int, classes: Mapping[str, Sequence[Sequence[int]]],
           default: str, unit: int | None) -> np.ndarray:
    """Cell -> class number (position in `classes`, len(classes) for default)."""
    out = np.full(n, len(classes), dtype=np.int32)
    for k, ranges in reversed(list(enumerate(classes.values()))):
        out[_touched(total, n, ranges, unit)] = k
    return out


def memory_map(total_bytes: int, classes: Mapping[str, Sequence[Sequence[int]]],
               cells: int = 1024, default: str = "absent") -> list[str]:
    """Physical memory [0, total_bytes) in `cells` equal cells (cell i is the interval
    [i*total/cells, (i+1)*total/cells)), each named after the first class of `classes`
    (highest priority first, e.g. corrupted, changed, sentinel, b_window, unchanged) with
    a range touching it; `default` where none does. Ranges past total_bytes are cut."""
    if total_bytes <= 0 or cells <= 0:
        raise ValueError("memory_map needs total_bytes > 0 and cells > 0")
    names = list(classes) + [default]
    return [names[k] for k in _paint(total_bytes, cells, classes, default, None)]


def class_page_counts(total_bytes: int, classes: Mapping[str, Sequence[Sequence[int]]],
                      default: str = "absent") -> dict[str, int]:
    """Pages of [0, total_bytes) per class, each page counted once under the first class
    (in `classes` order) touching it; pages no class touches count under `default`."""
    n = (total_bytes + PAGE_SIZE - 1) >> PAGE_SHIFT
    names = list(classes) + [default]
    counts = np.bincount(_paint(total_bytes, n, classes, default, PAGE_SIZE), minlength=len(names))
    out: dict[str, int] = {}
    for name, c in zip(names, counts.tolist()):
        out[name] = out.get(name, 0) + int(c)
    return out
