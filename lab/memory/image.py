"""ELF core files of guest physical memory, read by physical address.

Inputs are ELF core files whose PT_LOAD segments carry guest *physical* addresses in
p_paddr:

- QEMU's QMP ``dump-guest-memory`` (paging=false, ELF): one PT_LOAD per RAM block, e.g.
  0-256 MiB and the 256 KiB BIOS ROM at 0xfffc0000;
- the hibernation image ``dump.elf``: a copy of /proc/vmcore made in kernel B, p_paddr
  being kernel A's physical address (e.g. one PT_LOAD 0x2000000-0x7800000); makedumpfile
  -E images have many PT_LOADs, some with p_filesz < p_memsz (the tail is excluded memory
  that reads as zeros).

`PhysImage` maps such a file read-only with numpy.memmap and serves page arrays by physical
address. A page is *present* in an image when some PT_LOAD's [p_paddr, p_paddr + p_memsz)
touches it; bytes of a present page that no segment covers, and the p_filesz..p_memsz tail
of a segment, read as zeros. What a truncated file lacks is absent (PhysImage.truncated);
where PT_LOADs overlap, the later one wins. `pieces` walks one or two images over a scope.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from .ranges import (
    ADDR_LIMIT, CHUNK_BYTES, PAGE_SHIFT, PAGE_SIZE, WORDS64, Range, format_range, intersect_ranges, normalize_ranges,
    pages_out, ranges_to_json, subtract_ranges,
)

log = logging.getLogger(__name__)

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


