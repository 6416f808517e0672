"""Two memory images compared page by page (vectorised)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .image import PhysImage, _pieces, _scope
from .ranges import (
    CHUNK_BYTES, PAGE_SHIFT, PAGE_SIZE, WORDS64, Range, intersect_ranges, pages_to_ranges, ranges_bytes,
    ranges_to_json, subtract_ranges,
)

log = logging.getLogger(__name__)

# -- diff ---------------------------------------------------------------------------------


@dataclass
class DiffResult:
    """Page-by-page comparison of two images over the pages present in both."""

    a: str
    b: str
    differing: list[Range]
    pages_compared: int
    pages_equal: int
    pages_differing: int
    only_a: list[Range]
    only_b: list[Range]
    pages_excluded: int
    seconds: float = 0.0

    @property
    def pages_only_a(self) -> int:
        return ranges_bytes(self.only_a) >> PAGE_SHIFT

    @property
    def pages_only_b(self) -> int:
        return ranges_bytes(self.only_b) >> PAGE_SHIFT

    @property
    def identical(self) -> bool:
        return self.pages_differing == 0

    def to_json(self, limit: int | None = 1000) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "pages_compared": self.pages_compared,
            "pages_equal": self.pages_equal,
            "pages_differing": self.pages_differing,
            "pages_only_a": self.pages_only_a,
            "pages_only_b": self.pages_only_b,
            "pages_excluded": self.pages_excluded,
            "differing": ranges_to_json(self.differing, limit),
            "only_a": ranges_to_json(self.only_a, limit),
            "only_b": ranges_to_json(self.only_b, limit),
            "seconds": round(self.seconds, 3),
        }


def diff_ranges(a: PhysImage, b: PhysImage, exclude: Sequence[Sequence[int]] = (),
                only: Sequence[Sequence[int]] | None = None) -> DiffResult:
    """Compare `a` and `b` over the pages present in both, inside `only` (every page it
    touches; all memory when None) and outside `exclude` (every page it touches)."""
    t0 = time.monotonic()
    scope = _scope(only, exclude)
    pa, pb = a.present_ranges(), b.present_ranges()
    both = intersect_ranges(pa, pb)
    buf = np.empty((CHUNK_BYTES // PAGE_SIZE, WORDS64), dtype=bool)
    found: list[np.ndarray] = []
    compared = 0
    for piece in _pieces([a, b], scope):
        wa = a._words(piece.a, piece.start, piece.end)
        wb = b._words(piece.b, piece.start, piece.end)
        n = (piece.end - piece.start) >> PAGE_SHIFT
        compared += n
        hits = _differing_rows(wa, wb, buf[:n])
        if hits.size:
            found.append(hits + (piece.start >> PAGE_SHIFT))
    differing = pages_to_ranges(np.concatenate(found) if found else np.zeros(0, np.int64))
    n_diff = ranges_bytes(differing) >> PAGE_SHIFT
    res = DiffResult(
        a=str(a.path), b=str(b.path), differing=differing,
        pages_compared=compared, pages_equal=compared - n_diff, pages_differing=n_diff,
        only_a=intersect_ranges(subtract_ranges(pa, pb), scope),
        only_b=intersect_ranges(subtract_ranges(pb, pa), scope),
        pages_excluded=ranges_bytes(subtract_ranges(both, scope)) >> PAGE_SHIFT,
        seconds=time.monotonic() - t0,
    )
    log.debug("diff %s %s: %d of %d pages differ in %d ranges (%.2f s)", a.path.name,
              b.path.name, n_diff, compared, len(differing), res.seconds)
    return res


def _differing_rows(wa: np.ndarray | None, wb: np.ndarray | None, buf: np.ndarray) -> np.ndarray:
    """Indices of the rows (pages) where wa and wb differ; None stands for zeros."""
    if wa is None:
        if wb is None:
            return np.zeros(0, np.int64)
        np.not_equal(wb, 0, out=buf)
    elif wb is None:
        np.not_equal(wa, 0, out=buf)
    else:
        np.not_equal(wa, wb, out=buf)
    return np.flatnonzero(buf.any(axis=1))


