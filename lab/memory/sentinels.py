"""Sentinel pages: the self-identifying pages guests/progs/kj-sentinel.c writes into A,
their format (the one definition; kj-sentinel.c is checked against it byte for byte in
tests/test_progs.py), and finding and judging them in memory images.

Sentinel page (4096 bytes, little-endian)::

    0   8 bytes  b"KJLABSNT"
    8   u64      run_token
    16  u32      page_index   (0..N-1 within its region, N < 2**20)
    20  u32      region       (0 tmpfs file, 1 anonymous memory)
    24  u32      body_seed
    28  1017 u32 words: word j = index*0x9E3779B1 + (j+7)*0x85EBCA77 + seed
                               + region*0x27D4EB2F   (mod 2**32)

Every page names its run, region and place, and its body depends on all three, so a page
found at the wrong place, from another run or half overwritten can be told apart.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .image import PhysImage, _pieces
from .ranges import (
    ADDR_LIMIT, CHUNK_BYTES, PAGE_SHIFT, PAGE_SIZE, Range, addresses_to_ranges, compact_indices, normalize_ranges,
    pages_to_ranges, ranges_to_json,
)

log = logging.getLogger(__name__)

# -- the format ----------------------------------------------------------------------------

SENTINEL_MAGIC = b"KJLABSNT"
MAGIC = SENTINEL_MAGIC
MAGIC_U64 = int.from_bytes(SENTINEL_MAGIC, "little")
REGION_TMPFS, REGION_ANON = 0, 1
REGIONS = {REGION_TMPFS: "tmpfs", REGION_ANON: "anon"}
MAX_INDEX = 1 << 20  # kj-sentinel writes at most 2**20 - 1 pages per region
HEADER = struct.Struct("<8sQIII")  # magic, run_token, page_index, region, body_seed
HEADER_SIZE = HEADER.size  # 28
BODY_WORDS = (PAGE_SIZE - HEADER_SIZE) // 4  # 1017
BODY_FIRST = HEADER_SIZE // 4  # the body starts at u32 word 7 (byte 28)
K_INDEX, K_WORD, K_REGION = 0x9E3779B1, 0x85EBCA77, 0x27D4EB2F
_WORD_TERMS = ((np.arange(BODY_FIRST, BODY_FIRST + BODY_WORDS, dtype=np.uint64) * K_WORD)
               & 0xFFFFFFFF).astype(np.uint32)

assert HEADER_SIZE == 28 and HEADER_SIZE + 4 * BODY_WORDS == PAGE_SIZE


def body_words(index: int, region: int, seed: int) -> np.ndarray:
    """The 1017 body words of one page, as a little-endian uint32 array."""
    words: np.ndarray = expected_bodies(np.array([index]), np.array([region]), np.array([seed]))[0].astype("<u4")
    return words


def sentinel_page(run_token: int, index: int, region: int, seed: int) -> bytes:
    """The 4096 bytes kj-sentinel writes for page `index` of `region`."""
    if not 0 <= run_token < 1 << 64:
        raise ValueError(f"run_token {run_token}: not a u64")
    for name, value in (("index", index), ("region", region), ("seed", seed)):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"{name} {value}: not a u32")
    page = HEADER.pack(MAGIC, run_token, index, region, seed) + body_words(index, region, seed).tobytes()
    assert len(page) == PAGE_SIZE
    return page


def parse_header(page: bytes) -> tuple[int, int, int, int] | None:
    """(run_token, page_index, region, body_seed) of a page that starts with MAGIC, else None."""
    if len(page) < HEADER_SIZE or page[:8] != MAGIC:
        return None
    _, token, index, region, seed = HEADER.unpack_from(page)
    return token, index, region, seed


# -- finding and judging them -------------------------------------------------------------


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

    def within(self, start: int, end: int) -> dict[str, int]:
        """Sentinel pages per region name whose physical address lies in [start, end)."""
        inside = (self.paddr >= start) & (self.paddr < end)
        return {name: int((inside & (self.region == r)).sum()) for r, name in REGIONS.items()}

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
    # Pages of this run whose header is broken, split by what `before` had at that address:
    # a sentinel page (damaged: A's data was hit) or not (stale: a leftover copy in memory A
    # did not keep a sentinel in, e.g. swsusp's restore buffers in free pages - not A's state).
    damaged_headers: list[int]
    stale_headers: list[int]
    duplicate_keys: int
    moved_ok: bool = False  # the image check: pages of B's window sit in kexec's swap pages

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupted or (self.moved and not self.moved_ok) or self.damaged_headers)

    def summary(self) -> str:
        parts = [f"{n} {name}" for name, g in (("missing", self.missing),
                 ("corrupted", self.corrupted), ("moved", self.moved))
                 for n in [sum(len(x.indices) for x in g.values())] if n]
        if self.damaged_headers:
            parts.append(f"{len(self.damaged_headers)} damaged headers")
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
            "damaged_headers": [f"0x{p:x}" for p in self.damaged_headers[:limit]],
            "stale_headers": [f"0x{p:x}" for p in self.stale_headers[:limit]],
            "duplicate_keys": self.duplicate_keys,
        }


def check_sentinels(before: SentinelScan, after: SentinelScan,
                    expected_count: Mapping[int, int], moved_ok: bool = False) -> SentinelCheck:
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
    sentinel_places = set(before.paddr.tolist())
    return SentinelCheck(
        expected={REGIONS.get(r, str(r)): c for r, c in sorted(expected_count.items())},
        found_intact=intact,
        missing=_finish(acc["missing"]), corrupted=_finish(acc["corrupted"]),
        moved=_finish(acc["moved"]), not_in_before=_finish(acc["not_in_before"]),
        unexpected=_finish(unexpected),
        damaged_headers=[p for p in after.corrupt_headers if p in sentinel_places],
        stale_headers=[p for p in after.corrupt_headers if p not in sentinel_places],
        moved_ok=moved_ok,
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
    out: dict[str, SentinelGroup] = {}
    for name, g in acc.items():
        moved_from = addresses_to_ranges(g.was) if g.at and g.was else []
        out[name] = SentinelGroup(sorted(g.indices), addresses_to_ranges(g.at or g.was), moved_from)
    return out


