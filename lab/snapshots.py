"""Host-side analysis of guest physical memory images: pure, vectorised (numpy).

Inputs are ELF core files whose PT_LOAD segments carry guest *physical* addresses in
p_paddr:

- QEMU's QMP ``dump-guest-memory`` (paging=false, ELF): one PT_LOAD per RAM block, e.g.
  0-256 MiB and the 256 KiB BIOS ROM at 0xfffc0000;
- the hibernation image ``dump.elf``: a copy of /proc/vmcore made in kernel B, p_paddr
  being kernel A's physical address (e.g. one PT_LOAD 0x2000000-0x7800000); makedumpfile
  -E images have many PT_LOADs, some with p_filesz < p_memsz (the tail is excluded memory
  that reads as zeros).

`PhysImage` maps such a file read-only with numpy.memmap and serves page arrays by physical
address. `diff_ranges` compares two images page by page, `scan_sentinels` and
`check_sentinels` find and verify the guest's self-identifying sentinel pages (format
below, shared with guests/progs/kj-sentinel.c), `memory_map` draws a coarse map of
physical memory for the report. Every result has a ``to_json()`` for results.json; ranges
are ``[start, end)`` and appear there as ``"0x...-0x..."`` strings with their sizes.

Granularity is the 4 KiB page. A page is *present* in an image when some PT_LOAD's
[p_paddr, p_paddr + p_memsz) touches it; bytes of a present page that no segment covers,
and the p_filesz..p_memsz tail of a segment, read as zeros. What a truncated file lacks is
absent (PhysImage.truncated); where PT_LOADs overlap, the later one wins.

Sentinel page (4096 bytes, little-endian)::

    0   8 bytes  b"KJLABSNT"
    8   u64      run_token
    16  u32      page_index   (0..N-1 within its region, N < 2**20)
    20  u32      region       (0 tmpfs file, 1 anonymous memory)
    24  u32      body_seed
    28  1017 u32 words: word j = index*0x9E3779B1 + (j+7)*0x85EBCA77 + seed
                               + region*0x27D4EB2F   (mod 2**32)
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

log = logging.getLogger(__name__)

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


# -- ELF images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD: [paddr, paddr+memsz) of physical memory, the first filesz bytes of
    which are in the file at `offset`."""

    paddr: int
    memsz: int
    offset: int
    filesz: int
    vaddr: int = 0

    @property
    def end(self) -> int:
        return self.paddr + self.memsz

    @property
    def file_end(self) -> int:
        return self.paddr + min(self.filesz, self.memsz)

    def to_json(self) -> dict[str, Any]:
        return {"range": format_range((self.paddr, self.end)), "size": self.memsz,
                "offset": self.offset, "filesz": self.filesz, "vaddr": f"0x{self.vaddr:x}"}


@dataclass(frozen=True)
class Note:
    name: str
    type: int | str
    size: int


@dataclass(frozen=True)
class Extent:
    """A page-aligned piece of an image read the same way throughout: `file` (bytes at
    `offset` in the file), `zero` (memsz > filesz tail) or `mixed` (a page shared by a
    segment edge and something else: assembled by PhysImage.pages)."""

    start: int
    end: int
    kind: str
    offset: int = 0


class PhysImage:
    """An ELF core of guest physical memory, mapped read-only. `segments` are the PT_LOADs
    as written; `truncated` the physical ranges they claim but a short file lacks."""

    def __init__(self, path: Path, elf_class: int, machine: str, segments: list[Segment],
                 notes: list[Note], data: np.ndarray) -> None:
        self.path = path
        self.elf_class = elf_class
        self.machine = machine
        self.segments = segments
        self.notes = notes
        self._data = data
        self._eff, self.truncated = _effective_segments(segments, data.size)
        self._extents = _build_extents(self._eff)
        self._starts = [x.start for x in self._extents]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> PhysImage:
        p = Path(path)
        with p.open("rb") as f:
            try:
                elf = ELFFile(f)
            except ELFError as e:
                raise ValueError(f"{p}: not an ELF file: {e}") from e
            segments, notes = _read_headers(elf, p)
            elf_class, machine = elf.elfclass, str(elf["e_machine"])
        size = p.stat().st_size
        data = np.memmap(p, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        img = cls(p, elf_class, machine, segments, notes, data.view(np.ndarray))
        log.debug("%s: ELF%d %s, %d PT_LOAD, present %s", p.name, elf_class, machine,
                  len(segments), [format_range(r) for r in img.present_ranges()])
        return img

    def close(self) -> None:
        """Drop the mapping (it goes away once no page array from it is alive)."""
        self._data = np.zeros(0, np.uint8)
        self._extents, self._starts = [], []

    def __enter__(self) -> PhysImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ranges

    def extents(self) -> list[Extent]:
        return list(self._extents)

    def present_ranges(self) -> list[Range]:
        return normalize_ranges((x.start, x.end) for x in self._extents)

    def file_backed_ranges(self) -> list[Range]:
        """Bytes that are really in the file (not a zero-filled memsz tail)."""
        return normalize_ranges((s.paddr, s.file_end) for s in self._eff)

    def zero_fill_ranges(self) -> list[Range]:
        """Pages that only a memsz > filesz tail covers (excluded memory, read as zeros)."""
        return normalize_ranges((x.start, x.end) for x in self._extents if x.kind == "zero")

    @property
    def end(self) -> int:
        """One past the highest present byte (page-rounded)."""
        return self._extents[-1].end if self._extents else 0

    def present_mask(self, start: int, end: int) -> np.ndarray:
        """One bool per page of [start, end) (page-aligned): present in the image."""
        _check_aligned(start, end)
        mask = np.zeros((end - start) >> PAGE_SHIFT, dtype=bool)
        for s, e in intersect_ranges(self.present_ranges(), [(start, end)]):
            mask[(s - start) >> PAGE_SHIFT:(e - start) >> PAGE_SHIFT] = True
        return mask

    # data

    def pages(self, start: int, end: int, copy: bool = False) -> np.ndarray:
        """(n, 4096) uint8 of the pages [start, end) (page-aligned). A view into the file
        when one segment's file part covers the range and copy is False; otherwise a copy
        where absent pages and zero-filled tails are zeros (see present_mask)."""
        _check_aligned(start, end)
        n = (end - start) >> PAGE_SHIFT
        ext = self._extent_at(start)
        if ext is not None and ext.kind == "file" and end <= ext.end:
            off = ext.offset + start - ext.start
            view = self._data[off:off + (end - start)].reshape(n, PAGE_SIZE)
            return view.copy() if copy else view
        out = np.zeros((n, PAGE_SIZE), dtype=np.uint8)
        flat = out.reshape(-1)
        for seg in self._eff:
            s, e = max(start, seg.paddr), min(end, seg.file_end)
            if s < e:
                off = seg.offset + s - seg.paddr
                flat[s - start:e - start] = self._data[off:off + (e - s)]
        return out

    def _extent_at(self, addr: int) -> Extent | None:
        k = bisect.bisect_right(self._starts, addr) - 1
        if k >= 0 and addr < self._extents[k].end:
            return self._extents[k]
        return None

    def _words(self, ext: Extent | None, start: int, end: int) -> np.ndarray | None:
        """(n, 512) little-endian u64 of [start, end) inside one extent; None if zeros."""
        if ext is None or ext.kind == "zero":
            return None
        if ext.kind == "file":
            off = ext.offset + start - ext.start
            raw = self._data[off:off + (end - start)]
        else:
            raw = self.pages(start, end).reshape(-1)
        return raw.view("<u8").reshape(-1, WORDS64)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "elf_class": self.elf_class,
            "machine": self.machine,
            "segments": [s.to_json() for s in self.segments],
            "present": ranges_to_json(self.present_ranges()),
            "zero_fill": ranges_to_json(self.zero_fill_ranges()),
            "truncated": ranges_to_json(self.truncated),
            "notes": [{"name": n.name, "type": n.type, "size": n.size} for n in self.notes],
        }

    def __repr__(self) -> str:
        return f"PhysImage({str(self.path)!r}, {len(self.segments)} PT_LOAD)"


def _read_headers(elf: ELFFile, path: Path) -> tuple[list[Segment], list[Note]]:
    segments: list[Segment] = []
    notes: list[Note] = []
    for seg in elf.iter_segments():
        h = seg.header
        if h["p_type"] == "PT_LOAD":
            segments.append(Segment(int(h["p_paddr"]), int(h["p_memsz"]), int(h["p_offset"]),
                                    int(h["p_filesz"]), int(h["p_vaddr"])))
        elif h["p_type"] == "PT_NOTE":
            notes.extend(_read_notes(seg, path))
    return segments, notes


def _read_notes(seg: Any, path: Path) -> list[Note]:
    out: list[Note] = []
    try:
        for n in seg.iter_notes():
            out.append(Note(str(n["n_name"]), n["n_type"], int(n["n_descsz"])))
    except Exception as e:  # noqa: BLE001 - notes are informational; a bad one must not stop us
        log.warning("%s: cannot parse PT_NOTE at 0x%x: %s", path, seg.header["p_offset"], e)
    return out


def _effective_segments(segments: list[Segment], file_size: int) -> tuple[list[Segment], list[Range]]:
    """Segments sorted by address without overlaps, and the ranges lost to a short file.

    A segment whose file part runs past the end of the file (a truncated copy) keeps only
    what the file holds: the rest is absent, not zeros. Where PT_LOADs overlap, the later
    one in header order wins, as when a loader copies them in order."""
    out: list[Segment] = []
    lost: list[Range] = []
    for seg in segments:
        want = min(seg.filesz, seg.memsz)
        have = max(0, min(want, file_size - seg.offset))
        if have < want:
            log.warning("PT_LOAD %s: the file ends %d bytes early; that part is absent",
                        format_range((seg.paddr, seg.end)), want - have)
            lost.append((seg.paddr + have, seg.end))
            seg = Segment(seg.paddr, have, seg.offset, have, seg.vaddr)
        out.append(seg)
    ordered = sorted(out, key=lambda x: x.paddr)
    if all(x.end <= y.paddr for x, y in zip(ordered, ordered[1:])):
        return [x for x in ordered if x.memsz > 0], normalize_ranges(lost)
    return _resolve_overlaps(out), normalize_ranges(lost)


def _resolve_overlaps(segments: list[Segment]) -> list[Segment]:
    claimed: list[Range] = []
    out: list[Segment] = []
    for seg in reversed(segments):
        parts = subtract_ranges([(seg.paddr, seg.end)], claimed)
        if parts != [(seg.paddr, seg.end)]:
            log.warning("PT_LOAD %s overlaps a later one, which wins",
                        format_range((seg.paddr, seg.end)))
        for s, e in parts:
            cut = s - seg.paddr
            out.append(Segment(s, e - s, seg.offset + cut,
                               max(0, min(seg.filesz - cut, e - s)), seg.vaddr + cut))
        claimed = normalize_ranges(claimed + [(seg.paddr, seg.end)])
    return sorted(out, key=lambda x: x.paddr)


def _build_extents(segments: list[Segment]) -> list[Extent]:
    extents: list[Extent] = []
    edges: list[Range] = []
    for seg in segments:
        fs, fe = _page_up(seg.paddr), _page_down(seg.file_end)
        if fs < fe:
            extents.append(Extent(fs, fe, "file", seg.offset + fs - seg.paddr))
        zs, ze = _page_up(seg.file_end), _page_down(seg.end)
        if zs < ze:
            extents.append(Extent(zs, ze, "zero"))
        inner = [r for r in ((fs, fe), (zs, ze)) if r[0] < r[1]]
        edges += subtract_ranges(pages_out([(seg.paddr, seg.end)]), inner)
    extents += [Extent(s, e, "mixed") for s, e in normalize_ranges(edges)]
    return _merge_extents(sorted(extents, key=lambda x: x.start))


def _merge_extents(extents: list[Extent]) -> list[Extent]:
    """Join neighbours read the same way (makedumpfile writes runs of PT_LOADs that are
    contiguous in memory and in the file), so chunks stay large."""
    out: list[Extent] = []
    for x in extents:
        prev = out[-1] if out else None
        if (prev is not None and prev.end == x.start and prev.kind == x.kind
                and (x.kind != "file" or prev.offset + (prev.end - prev.start) == x.offset)):
            out[-1] = Extent(prev.start, x.end, x.kind, prev.offset)
        else:
            out.append(x)
    return out


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _page_down(x: int) -> int:
    return x & ~(PAGE_SIZE - 1)


def _check_aligned(start: int, end: int) -> None:
    if start % PAGE_SIZE or end % PAGE_SIZE or end < start:
        raise ValueError(f"range {format_range((start, end))} is not whole pages")


# -- pieces: where two images (or one) are each read one way -----------------------------


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    a: Extent | None
    b: Extent | None


def _pieces(images: Sequence[PhysImage], scope: list[Range]) -> Iterator[_Piece]:
    """Split `scope` where any image's extent begins or ends, and then into chunks of at
    most CHUNK_BYTES; yield the pieces where every image is present."""
    cuts = {c for s, e in scope for c in (s, e)}
    for img in images:
        cuts.update(c for x in img._extents for c in (x.start, x.end))
    points = sorted(cuts)
    for s, e in zip(points, points[1:]):
        if not _inside(scope, s):
            continue
        exts = [img._extent_at(s) for img in images]
        if any(x is None for x in exts):
            continue
        for cs in range(s, e, CHUNK_BYTES):
            ce = min(e, cs + CHUNK_BYTES)
            yield _Piece(cs, ce, exts[0], exts[-1])


def _inside(ranges: list[Range], addr: int) -> bool:
    k = bisect.bisect_right(ranges, (addr, ADDR_LIMIT)) - 1
    return k >= 0 and ranges[k][0] <= addr < ranges[k][1]


def _scope(only: Sequence[Sequence[int]] | None, exclude: Sequence[Sequence[int]]) -> list[Range]:
    base = pages_out(only) if only is not None else [(0, ADDR_LIMIT)]
    return subtract_ranges(base, pages_out(exclude))


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


# -- sentinels ----------------------------------------------------------------------------

SENTINEL_MAGIC = b"KJLABSNT"
MAGIC_U64 = int.from_bytes(SENTINEL_MAGIC, "little")
REGIONS = {0: "tmpfs", 1: "anon"}
MAX_INDEX = 1 << 20  # kj-sentinel writes at most 2**20 - 1 pages per region
BODY_WORDS = 1017
BODY_FIRST = 7  # the body starts at u32 word 7 (byte 28)
K_INDEX, K_WORD, K_REGION = 0x9E3779B1, 0x85EBCA77, 0x27D4EB2F
_WORD_TERMS = ((np.arange(BODY_FIRST, BODY_FIRST + BODY_WORDS, dtype=np.uint64) * K_WORD)
               & 0xFFFFFFFF).astype(np.uint32)


def expected_bodies(index: np.ndarray, region: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """(k, 1017) uint32: the body words of k sentinel pages."""
    base = (np.asarray(index, np.uint32) * np.uint32(K_INDEX)
            + np.asarray(seed, np.uint32)
            + np.asarray(region, np.uint32) * np.uint32(K_REGION))
    return base[:, None] + _WORD_TERMS[None, :]


@dataclass(eq=False)
class SentinelScan:
    """Sentinel pages of one run found in an image, one row per page (sorted by address).
    Pages with the magic and token whose region or index is impossible are kept apart in
    corrupt_headers; other_token counts sentinel pages of other runs."""

    image: str
    run_token: int
    paddr: np.ndarray  # int64
    region: np.ndarray  # uint32
    index: np.ndarray  # uint32
    seed: np.ndarray  # uint32
    bad_words: np.ndarray  # int32: body words that differ from the formula (0 = intact)
    corrupt_headers: list[int] = field(default_factory=list)  # physical addresses
    other_token: int = 0
    pages_scanned: int = 0
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.paddr.size)

    def by_key(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
        """(region, index) -> [(paddr, bad_words), ...] in address order."""
        out: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for p, r, i, bad in zip(self.paddr.tolist(), self.region.tolist(), self.index.tolist(),
                                self.bad_words.tolist()):
            out.setdefault((r, i), []).append((p, bad))
        return out

    def duplicates(self) -> dict[tuple[int, int], list[int]]:
        """(region, index) found at more than one address -> the addresses."""
        return {k: [p for p, _ in v] for k, v in self.by_key().items() if len(v) > 1}

    def intact(self) -> np.ndarray:
        mask: np.ndarray = self.bad_words == 0
        return mask

    def ranges(self, region: int | None = None) -> list[Range]:
        sel = self.paddr if region is None else self.paddr[self.region == region]
        return pages_to_ranges(sel >> PAGE_SHIFT)

    def to_json(self, limit: int | None = 1000) -> dict[str, Any]:
        regions: dict[str, Any] = {}
        for r in sorted(set(self.region.tolist())):
            sel = self.region == r
            bad = sel & (self.bad_words != 0)
            regions[REGIONS.get(r, str(r))] = {
                "pages": int(sel.sum()),
                "indices": compact_indices(self.index[sel].tolist()),
                "corrupted": compact_indices(self.index[bad].tolist()),
                "ranges": ranges_to_json(self.ranges(r), limit),
            }
        dups = self.duplicates()
        return {
            "image": self.image,
            "run_token": f"0x{self.run_token:016x}",
            "pages": len(self),
            "intact": int(self.intact().sum()),
            "regions": regions,
            "duplicates": [{"region": REGIONS.get(r, str(r)), "index": i,
                            "addresses": [f"0x{p:x}" for p in ps]}
                           for (r, i), ps in list(dups.items())[:limit]],
            "duplicate_keys": len(dups),
            "corrupt_headers": [f"0x{p:x}" for p in self.corrupt_headers[:limit]],
            "other_token": self.other_token,
            "pages_scanned": self.pages_scanned,
            "seconds": round(self.seconds, 3),
        }


def scan_sentinels(img: PhysImage, run_token: int) -> SentinelScan:
    """Every page of `img` starting with the magic and `run_token`, decoded and checked."""
    if not 0 <= run_token < 1 << 64:
        raise ValueError(f"run_token {run_token} is not a u64")
    t0 = time.monotonic()
    token = np.uint64(run_token)
    parts: list[tuple[np.ndarray, ...]] = []  # per chunk: paddr, region, index, seed, bad, ok
    other = scanned = 0
    for piece in _pieces([img], [(0, ADDR_LIMIT)]):
        words = img._words(piece.a, piece.start, piece.end)
        if words is None:
            continue
        scanned += words.shape[0]
        rows = np.flatnonzero(words[:, 0] == np.uint64(MAGIC_U64))
        if rows.size == 0:
            continue
        mine = words[rows, 1] == token
        other += int((~mine).sum())
        rows = rows[mine]
        if rows.size:
            paddr = piece.start + (rows.astype(np.int64) << PAGE_SHIFT)
            parts.append(_decode(words[rows].view("<u4"), paddr))
    cols = [np.concatenate(c) for c in zip(*parts)] if parts else _no_sentinels()
    paddr, region, index, seed, bad, ok = cols
    scan = SentinelScan(image=str(img.path), run_token=run_token, paddr=paddr[ok],
                        region=region[ok], index=index[ok], seed=seed[ok], bad_words=bad[ok],
                        corrupt_headers=paddr[~ok].tolist(), other_token=other,
                        pages_scanned=scanned, seconds=time.monotonic() - t0)
    log.debug("%s: %d sentinel pages of token 0x%x (%d not intact, %d bad headers) in %.2f s",
              img.path.name, len(scan), run_token, int((scan.bad_words != 0).sum()),
              len(scan.corrupt_headers), scan.seconds)
    return scan


def _decode(pages: np.ndarray, paddr: np.ndarray) -> tuple[np.ndarray, ...]:
    """(paddr, region, index, seed, bad_words, header_ok) of (k, 1024) u32 candidates."""
    index, region, seed = pages[:, 4], pages[:, 5], pages[:, 6]
    ok = (index < MAX_INDEX) & np.isin(region, list(REGIONS))
    bad = (pages[:, BODY_FIRST:] != expected_bodies(index, region, seed)).sum(axis=1)
    return (paddr, region.astype(np.uint32), index.astype(np.uint32), seed.astype(np.uint32),
            np.where(ok, bad, -1).astype(np.int32), ok)


def _no_sentinels() -> list[np.ndarray]:
    z = np.zeros(0, np.uint32)
    return [np.zeros(0, np.int64), z, z, z, np.zeros(0, np.int32), np.zeros(0, bool)]


@dataclass
class SentinelGroup:
    """Sentinel pages of one region in one state: their indices and physical ranges."""

    indices: list[int] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)  # where they are (after) or were
    from_ranges: list[Range] = field(default_factory=list)  # moved: where they were before

    def to_json(self, limit: int | None = 1000) -> dict[str, Any]:
        out = {"count": len(self.indices), "indices": compact_indices(self.indices),
               "ranges": ranges_to_json(self.ranges, limit)}
        if self.from_ranges:
            out["from_ranges"] = ranges_to_json(self.from_ranges, limit)
        return out


@dataclass
class SentinelCheck:
    """`after` against `before` and the expected counts, per region name."""

    expected: dict[str, int]
    found_intact: dict[str, int]
    missing: dict[str, SentinelGroup]
    corrupted: dict[str, SentinelGroup]
    moved: dict[str, SentinelGroup]
    not_in_before: dict[str, SentinelGroup]
    unexpected: dict[str, SentinelGroup]
    corrupt_headers: list[int]
    duplicate_keys: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupted or self.moved or self.corrupt_headers)

    def summary(self) -> str:
        parts = [f"{n} {name}" for name, g in (("missing", self.missing),
                 ("corrupted", self.corrupted), ("moved", self.moved))
                 for n in [sum(len(x.indices) for x in g.values())] if n]
        if self.corrupt_headers:
            parts.append(f"{len(self.corrupt_headers)} corrupt headers")
        total = sum(self.expected.values())
        intact = sum(self.found_intact.values())
        return f"{intact}/{total} sentinel pages intact in place" + (
            "" if not parts else ": " + ", ".join(parts))

    def to_json(self, limit: int | None = 1000) -> dict[str, Any]:
        def groups(d: dict[str, SentinelGroup]) -> dict[str, Any]:
            return {k: v.to_json(limit) for k, v in d.items()}

        return {
            "ok": self.ok,
            "summary": self.summary(),
            "expected": self.expected,
            "found_intact": self.found_intact,
            "missing": groups(self.missing),
            "corrupted": groups(self.corrupted),
            "moved": groups(self.moved),
            "not_in_before": groups(self.not_in_before),
            "unexpected": groups(self.unexpected),
            "corrupt_headers": [f"0x{p:x}" for p in self.corrupt_headers[:limit]],
            "duplicate_keys": self.duplicate_keys,
        }


def check_sentinels(before: SentinelScan, after: SentinelScan,
                    expected_count: Mapping[int, int]) -> SentinelCheck:
    """Every expected (region, index < count) must be in `after`, intact, and at its
    `before` address when `before` has it. A page found at several addresses counts as in
    place if one copy sits at a `before` address; it is corrupted if any copy is (an
    intact twin in the page cache must not hide a damaged copy)."""
    b_keys, a_keys = before.by_key(), after.by_key()
    acc: dict[str, dict[str, _GroupAcc]] = {k: {} for k in
                                             ("missing", "corrupted", "moved", "not_in_before")}
    intact: dict[str, int] = {}
    for region, count in sorted(expected_count.items()):
        name = REGIONS.get(region, str(region))
        intact[name] = 0
        for index in range(count):
            state = _judge(b_keys.get((region, index), []), a_keys.get((region, index), []))
            for kind, where, was in state:
                acc[kind].setdefault(name, _GroupAcc()).add(index, where, was)
            intact[name] += int(all(k == "not_in_before" for k, _, _ in state))
    unexpected: dict[str, _GroupAcc] = {}
    for (region, index), occ in a_keys.items():
        if index >= expected_count.get(region, 0):
            unexpected.setdefault(REGIONS.get(region, str(region)), _GroupAcc()).add(
                index, occ[0][0], None)
    return SentinelCheck(
        expected={REGIONS.get(r, str(r)): c for r, c in sorted(expected_count.items())},
        found_intact=intact,
        missing=_finish(acc["missing"]), corrupted=_finish(acc["corrupted"]),
        moved=_finish(acc["moved"]), not_in_before=_finish(acc["not_in_before"]),
        unexpected=_finish(unexpected), corrupt_headers=list(after.corrupt_headers),
        duplicate_keys=len(after.duplicates()),
    )


def _judge(before: list[tuple[int, int]], after: list[tuple[int, int]]
           ) -> list[tuple[str, int | None, int | None]]:
    """[(state, address after, address before)] for one expected page; [] when fine."""
    was = [p for p, _ in before]
    out: list[tuple[str, int | None, int | None]] = []
    if not before:
        out.append(("not_in_before", after[0][0] if after else None, None))
    if not after:
        return out + [("missing", None, was[0] if was else None)]
    in_place = [(p, bad) for p, bad in after if p in was]
    damaged = [p for p, bad in after if bad]
    if damaged:  # an intact twin (a page-cache copy) must not hide a damaged copy
        out.append(("corrupted", damaged[0], None))
    if was and not in_place:
        out.append(("moved", after[0][0], was[0]))
    return out


@dataclass
class _GroupAcc:
    indices: list[int] = field(default_factory=list)
    at: list[int] = field(default_factory=list)
    was: list[int] = field(default_factory=list)

    def add(self, index: int, at: int | None, was: int | None) -> None:
        self.indices.append(index)
        if at is not None:
            self.at.append(at)
        if was is not None:
            self.was.append(was)


def _finish(acc: dict[str, _GroupAcc]) -> dict[str, SentinelGroup]:
    def rng(addrs: list[int]) -> list[Range]:
        return pages_to_ranges(np.asarray(addrs, np.int64) >> PAGE_SHIFT)

    out: dict[str, SentinelGroup] = {}
    for name, g in acc.items():
        moved_from = rng(g.was) if g.at and g.was else []
        out[name] = SentinelGroup(sorted(g.indices), rng(g.at) if g.at else rng(g.was), moved_from)
    return out


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
