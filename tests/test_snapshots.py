"""lab.memory on synthetic ELF cores written here (ELF32 and ELF64, gaps, memsz > filesz,
unaligned segments) and, when a run left them, on real QEMU snapshots and dump.elf."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lab.memory import sentinels as sentinel_format
from lab.memory.diff import diff_ranges
from lab.memory.image import PhysImage
from lab.memory.memmap import class_page_counts, memory_map
from lab.memory.ranges import (
    CHUNK_BYTES, PAGE_SIZE, compact_indices, intersect_ranges, normalize_ranges, pages_to_ranges, subtract_ranges,
)
from lab.memory.checks import SentinelPlan, check_resume
from lab.memory.sentinels import check_sentinels, scan_sentinels

RUNS = Path(__file__).resolve().parent.parent / "reports" / "runs"
MiB = 1 << 20
TOKEN = 0x1122334455667788

# -- a private reference of the sentinel format (independent of lab/) -----------------------


def sentinel_page(run_token: int, index: int, region: int, seed: int) -> bytes:
    head = b"KJLABSNT" + struct.pack("<QIII", run_token, index, region, seed)
    words = [(index * 0x9E3779B1 + (j + 7) * 0x85EBCA77 + seed + region * 0x27D4EB2F) % 2**32
             for j in range(1017)]
    page = head + struct.pack("<1017I", *words)
    assert len(page) == PAGE_SIZE
    return page


def test_reference_matches_the_labs_sentinel_format() -> None:
    fmt = sentinel_format
    for args in ((TOKEN, 0, 0, 0), (TOKEN, 12345, 1, 0xDEADBEEF), (0, 2**20 - 1, 1, 2**32 - 1)):
        assert fmt.sentinel_page(*args) == sentinel_page(*args)


# -- a small ELF core writer ---------------------------------------------------------------


@dataclass
class Seg:
    paddr: int
    memsz: int
    filesz: int | None = None  # None: = memsz


def write_core(path: Path, segs: list[Seg], data: dict[int, bytes] | None = None,
               elf_class: int = 64, pad: int = 0) -> Path:
    """An ELF core with one PT_NOTE and one PT_LOAD per Seg, file parts laid out one after
    the other from the end of the headers (+ pad bytes); the file is sparse and `data`
    (physical address -> bytes, inside some file part; the first Seg holding it, or
    Seg number k for the key addr + k * SEG_KEY) is written in place."""
    is64 = elf_class == 64
    ehsize, phsize = (64, 56) if is64 else (52, 32)
    note = struct.pack("<III", 5, 4, 0x4B4A) + b"KJMP\0\0\0\0" + b"DEAD"
    note_off = ehsize + phsize * (len(segs) + 1)
    offset = note_off + len(note) + pad
    phdrs = [_phdr(is64, 4, note_off, 0, 0, len(note), len(note))]
    layout: list[tuple[int, int, int]] = []  # paddr, file offset, filesz
    for s in segs:
        filesz = s.memsz if s.filesz is None else s.filesz
        phdrs.append(_phdr(is64, 1, offset, s.paddr, s.paddr, filesz, s.memsz))
        layout.append((s.paddr, offset, filesz))
        offset += filesz
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1, 0]) + bytes(8)
    fmt = "<16sHHIQQQIHHHHHH" if is64 else "<16sHHIIIIIHHHHHH"
    ehdr = struct.pack(fmt, ident, 4, 3, 1, 0, ehsize, 0, 0, ehsize, phsize, len(phdrs), 0, 0, 0)
    with path.open("wb") as f:
        f.write(ehdr + b"".join(phdrs) + note)
        f.truncate(offset)
        for addr, blob in (data or {}).items():
            f.seek(_file_offset(layout, addr, len(blob)))
            f.write(blob)
    return path


def _phdr(is64: bool, ptype: int, off: int, vaddr: int, paddr: int, filesz: int, memsz: int) -> bytes:
    if is64:
        return struct.pack("<IIQQQQQQ", ptype, 7, off, vaddr, paddr, filesz, memsz, 0)
    return struct.pack("<IIIIIIII", ptype, off, vaddr, paddr, filesz, memsz, 7, 0)


SEG_KEY = 1 << 48


def _file_offset(layout: list[tuple[int, int, int]], key: int, size: int) -> int:
    addr, k = key % SEG_KEY, key // SEG_KEY
    for paddr, off, filesz in layout[k:]:
        if paddr <= addr and addr + size <= paddr + filesz:
            return off + addr - paddr
    raise AssertionError(f"0x{addr:x}+{size} is not in any file part")


def page_of(value: int) -> bytes:
    return bytes([value]) * PAGE_SIZE


# -- range helpers --------------------------------------------------------------------------


def test_range_helpers() -> None:
    assert normalize_ranges([(5, 9), (0, 2), (2, 3), (8, 12), (20, 20)]) == [(0, 3), (5, 12)]
    assert intersect_ranges([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
    assert subtract_ranges([(0, 100)], [(10, 20), (30, 40), (90, 200)]) == [(0, 10), (20, 30), (40, 90)]
    assert subtract_ranges([(0, 10), (50, 60)], [(5, 55)]) == [(0, 5), (55, 60)]
    assert pages_to_ranges(np.array([7, 3, 4, 5, 9, 4])) == [
        (3 * PAGE_SIZE, 6 * PAGE_SIZE), (7 * PAGE_SIZE, 8 * PAGE_SIZE), (9 * PAGE_SIZE, 10 * PAGE_SIZE)]
    assert compact_indices([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert compact_indices([]) == ""


# -- PhysImage ------------------------------------------------------------------------------


@pytest.mark.parametrize("elf_class", [32, 64])
def test_open_segments_gaps_and_zero_tail(tmp_path: Path, elf_class: int) -> None:
    path = write_core(tmp_path / "a.elf", [Seg(0, 64 * 1024), Seg(0x20000, 0x4000, 0x1000)],
                      {0x3000: page_of(0x33), 0x20000: page_of(0x44)}, elf_class, pad=3)
    with PhysImage.open(path) as img:
        assert img.elf_class == elf_class
        assert [(s.paddr, s.memsz, s.filesz) for s in img.segments] == [
            (0, 0x10000, 0x10000), (0x20000, 0x4000, 0x1000)]
        assert img.present_ranges() == [(0, 0x10000), (0x20000, 0x24000)]
        assert img.zero_fill_ranges() == [(0x21000, 0x24000)]
        assert img.file_backed_ranges() == [(0, 0x10000), (0x20000, 0x21000)]
        assert [(n.name, n.size) for n in img.notes] == [("KJMP", 4)]
        view = img.pages(0x3000, 0x5000)
        assert view.shape == (2, PAGE_SIZE) and view.dtype == np.uint8
        assert (view[0] == 0x33).all() and (view[1] == 0).all()
        # across the gap and into the zero tail: a copy, zeros where nothing is
        mixed = img.pages(0xF000, 0x22000)
        assert mixed.shape == (19, PAGE_SIZE)
        assert not mixed[:17].any() and (mixed[17] == 0x44).all() and not mixed[18].any()
        assert img.present_mask(0xF000, 0x22000).tolist() == [True] + [False] * 16 + [True, True]
        json.dumps(img.to_json())
        with pytest.raises(ValueError):
            img.pages(0x100, 0x1000)


def test_unaligned_segment_edges_are_assembled(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 24  # 0x1800 bytes
    path = write_core(tmp_path / "u.elf", [Seg(0x10000, 0x1800), Seg(0x9F000, 0xC00)],
                      {0x10000: blob}, 32)
    with PhysImage.open(path) as img:
        assert img.present_ranges() == [(0x10000, 0x12000), (0x9F000, 0xA0000)]
        got = img.pages(0x10000, 0x12000).reshape(-1)
        assert got[:0x1800].tobytes() == blob and not got[0x1800:].any()


def test_split_segments_read_like_one(tmp_path: Path) -> None:
    data = {0x1000: page_of(1), 0x5000: page_of(2), 0x9000: page_of(3)}
    one = write_core(tmp_path / "one.elf", [Seg(0, 0xC000)], data)
    split = write_core(tmp_path / "split.elf", [Seg(0, 0x4000), Seg(0x4000, 0x4000),
                                                 Seg(0x8000, 0x4000)], data, 32)
    with PhysImage.open(one) as a, PhysImage.open(split) as b:
        assert len(b.segments) == 3 and len(b.extents()) == 1
        assert b.present_ranges() == [(0, 0xC000)]
        assert diff_ranges(a, b).identical
        assert np.array_equal(a.pages(0, 0xC000), b.pages(0, 0xC000))


def test_truncated_file_loses_its_tail(tmp_path: Path) -> None:
    path = write_core(tmp_path / "t.elf", [Seg(0, 0x4000)], {0: page_of(1), 0x3000: page_of(9)})
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 0x1800)
    with PhysImage.open(path) as img:
        assert img.truncated == [(0x2800, 0x4000)]
        assert img.present_ranges() == [(0, 0x3000)]  # the half page reads as zeros
        p = img.pages(0, 0x4000)
        assert (p[0] == 1).all() and not p[2:].any()


def test_overlapping_segments_later_wins(tmp_path: Path) -> None:
    # like a bogus huge PT_LOAD written before the real one: the real (later) one wins
    segs = [Seg(0, 0x10000), Seg(0x4000, 0x2000)]
    path = write_core(tmp_path / "o.elf", segs, {0x4000: page_of(1), SEG_KEY + 0x4000: page_of(2)})
    with PhysImage.open(path) as img:
        assert img.present_ranges() == [(0, 0x10000)]
        p = img.pages(0, 0x10000)
        assert (p[4] == 2).all() and not p[:4].any() and not p[5:].any()
        assert [x.kind for x in img.extents()] == ["file"] * 3


# -- diff -----------------------------------------------------------------------------------


def test_diff_finds_pages_ranges_and_one_sided_pages(tmp_path: Path) -> None:
    segs_a = [Seg(0, 0x40000), Seg(0x100000, 0x8000, 0x2000)]
    segs_b = [Seg(0, 0x30000), Seg(0x38000, 0x8000), Seg(0x100000, 0x8000)]
    same = {0x1000: page_of(7), 0x20000: page_of(8)}
    a = write_core(tmp_path / "a.elf", segs_a, {**same, 0x5000: page_of(1)}, 64, pad=4)
    b_data = {**same, 0x5000: page_of(2), 0x6000: page_of(3), 0x7000: b"x",
              0x3F000: page_of(5), 0x104000: page_of(6), 0x101000: page_of(0)}
    b = write_core(tmp_path / "b.elf", segs_b, b_data, 32)
    with PhysImage.open(a) as ia, PhysImage.open(b) as ib:
        r = diff_ranges(ia, ib)
        assert r.differing == [(0x5000, 0x8000), (0x3F000, 0x40000), (0x104000, 0x105000)]
        assert r.only_a == [(0x30000, 0x38000)] and r.only_b == []
        assert r.pages_only_a == 8 and r.pages_only_b == 0
        assert r.pages_compared == 0x38 + 8 and r.pages_differing == 5
        assert r.pages_equal == r.pages_compared - 5
        same_r = diff_ranges(ia, ia)
        assert same_r.identical and same_r.pages_compared == 0x48
        # b vs a is the mirror image
        back = diff_ranges(ib, ia)
        assert back.differing == r.differing and back.only_b == r.only_a
        json.dumps(r.to_json())


def test_diff_exclude_and_only(tmp_path: Path) -> None:
    data_a = {0x2000: page_of(1), 0x9000: page_of(1), 0xA000: page_of(1)}
    data_b = {0x2000: page_of(2), 0x9000: page_of(2), 0xA000: page_of(2)}
    a = write_core(tmp_path / "a.elf", [Seg(0, 0x10000)], data_a)
    b = write_core(tmp_path / "b.elf", [Seg(0, 0x10000)], data_b)
    with PhysImage.open(a) as ia, PhysImage.open(b) as ib:
        r = diff_ranges(ia, ib, exclude=[(0x9000, 0x9001)])  # touches one page: excluded
        assert r.differing == [(0x2000, 0x3000), (0xA000, 0xB000)]
        assert r.pages_excluded == 1 and r.pages_compared == 15
        r = diff_ranges(ia, ib, only=[(0x8000, 0xC000)], exclude=[(0xA000, 0xB000)])
        assert r.differing == [(0x9000, 0xA000)] and r.pages_compared == 3
        assert r.pages_excluded == 13
        assert diff_ranges(ia, ib, only=[]).pages_compared == 0


def test_diff_across_chunks_coalesces(tmp_path: Path) -> None:
    size = CHUNK_BYTES + 2 * MiB
    edge = CHUNK_BYTES - PAGE_SIZE
    a = write_core(tmp_path / "a.elf", [Seg(0, size)], {0: page_of(1)}, pad=1)
    b = write_core(tmp_path / "b.elf", [Seg(0, size)],
                   {0: page_of(1), edge: page_of(1) * 2, size - PAGE_SIZE: page_of(3)})
    with PhysImage.open(a) as ia, PhysImage.open(b) as ib:
        r = diff_ranges(ia, ib)
        assert r.differing == [(edge, edge + 2 * PAGE_SIZE), (size - PAGE_SIZE, size)]
        assert r.pages_compared == size // PAGE_SIZE


# -- sentinels ------------------------------------------------------------------------------

TMPFS, ANON = 0, 1


def corrupt(page: bytes, word: int, count: int = 1) -> bytes:
    """Flip `count` u32 words from u32 position `word`."""
    buf = bytearray(page)
    for w in range(word, word + count):
        buf[4 * w] ^= 0xFF
    return bytes(buf)


@pytest.fixture
def sentinel_images(tmp_path: Path) -> tuple[Path, Path]:
    """before: tmpfs 0..9 at 0x10000+, anon 0..4 at 0x80000+, a duplicate of tmpfs 3,
    another run's page, a header with region 7. after: tmpfs 2 gone, tmpfs 5 with two bad
    words, tmpfs 6-7 moved, anon 4 corrupted and moved, plus an unexpected tmpfs 10."""
    seed = 0xC0FFEE
    tmpfs = {i: sentinel_page(TOKEN, i, TMPFS, seed) for i in range(11)}
    anon = {i: sentinel_page(TOKEN, i, ANON, seed + 1) for i in range(5)}
    before: dict[int, bytes] = {0x10000 + i * PAGE_SIZE: tmpfs[i] for i in range(10)}
    before.update({0x80000 + i * PAGE_SIZE: anon[i] for i in range(5)})
    before[0x40000] = tmpfs[3]
    before[0x41000] = sentinel_page(TOKEN + 1, 0, TMPFS, seed)
    before[0x42000] = sentinel_page(TOKEN, 1, 7, seed)
    after = dict(before)
    del after[0x10000 + 2 * PAGE_SIZE]
    after[0x10000 + 5 * PAGE_SIZE] = corrupt(tmpfs[5], 100, 2)
    for i in (6, 7):
        del after[0x10000 + i * PAGE_SIZE]
        after[0xC0000 + i * PAGE_SIZE] = tmpfs[i]
    del after[0x80000 + 4 * PAGE_SIZE]
    after[0xD0000] = corrupt(anon[4], 1023)
    after[0xD1000] = tmpfs[10]
    segs = [Seg(0, 0x100000)]
    return (write_core(tmp_path / "before.elf", segs, before, 64),
            write_core(tmp_path / "after.elf", segs, after, 32, pad=2))


def test_scan_sentinels_finds_and_checks_pages(sentinel_images: tuple[Path, Path]) -> None:
    with PhysImage.open(sentinel_images[1]) as img:
        scan = scan_sentinels(img, TOKEN)
        keys = list(zip(scan.region.tolist(), scan.index.tolist(), scan.paddr.tolist(),
                        scan.bad_words.tolist()))
        assert (TMPFS, 5, 0x15000, 2) in keys
        assert (ANON, 4, 0xD0000, 1) in keys
        assert (TMPFS, 6, 0xC6000, 0) in keys
        assert len(scan) == 9 + 1 + 1 + 5  # tmpfs 0-9 but 2, the copy of 3, tmpfs 10, anon
        assert scan.paddr.tolist() == sorted(scan.paddr.tolist())
        assert scan.duplicates() == {(TMPFS, 3): [0x13000, 0x40000]}
        assert scan.corrupt_headers == [0x42000]
        assert scan.other_token == 1
        assert int(scan.intact().sum()) == len(scan) - 2
        assert scan.ranges(ANON) == [(0x80000, 0x84000), (0xD0000, 0xD1000)]
        assert scan_sentinels(img, TOKEN + 2).paddr.size == 0
        json.dumps(scan.to_json())


def test_check_sentinels_reports_missing_corrupted_moved(sentinel_images: tuple[Path, Path]) -> None:
    with PhysImage.open(sentinel_images[0]) as ib, PhysImage.open(sentinel_images[1]) as ia:
        before, after = scan_sentinels(ib, TOKEN), scan_sentinels(ia, TOKEN)
    check = check_sentinels(before, after, {TMPFS: 10, ANON: 5})
    assert not check.ok
    assert set(check.missing) == {"tmpfs"}
    assert check.missing["tmpfs"].indices == [2]
    assert check.missing["tmpfs"].ranges == [(0x12000, 0x13000)]  # where it was
    assert check.corrupted["tmpfs"].indices == [5]
    assert check.corrupted["tmpfs"].ranges == [(0x15000, 0x16000)]
    assert check.corrupted["anon"].indices == [4]
    assert check.moved["tmpfs"].indices == [6, 7]
    assert check.moved["tmpfs"].ranges == [(0xC6000, 0xC8000)]
    assert check.moved["tmpfs"].from_ranges == [(0x16000, 0x18000)]
    assert check.moved["anon"].ranges == [(0xD0000, 0xD1000)]
    assert check.moved["anon"].from_ranges == [(0x84000, 0x85000)]
    assert check.unexpected["tmpfs"].indices == [10]
    assert check.not_in_before == {}
    # 0x42000 had a broken header before too: a stale page, not damage to A's sentinels
    assert check.stale_headers == [0x42000] and check.damaged_headers == [] and check.duplicate_keys == 1
    assert check.found_intact == {"tmpfs": 6, "anon": 4}
    assert check.expected == {"tmpfs": 10, "anon": 5}
    out = json.loads(json.dumps(check.to_json()))
    assert out["moved"]["tmpfs"]["indices"] == "6-7"
    assert out["moved"]["tmpfs"]["ranges"]["ranges"] == [{"range": "0xc6000-0xc8000", "size": 8192}]
    assert out["summary"].startswith("10/15 sentinel pages intact in place: 1 missing")


def test_check_sentinels_all_good_and_not_in_before(sentinel_images: tuple[Path, Path]) -> None:
    with PhysImage.open(sentinel_images[0]) as ib:
        before = scan_sentinels(ib, TOKEN)
    check = check_sentinels(before, before, {TMPFS: 10, ANON: 5})
    assert check.missing == {} and check.corrupted == {} and check.moved == {}
    assert check.found_intact == {"tmpfs": 10, "anon": 5}
    # the page with region 7 was broken before too: not one of A's sentinel places
    assert check.ok and check.stale_headers == [0x42000] and check.damaged_headers == []
    with PhysImage.open(sentinel_images[0]) as ib:
        nothing = scan_sentinels(ib, TOKEN + 2)
    later = check_sentinels(nothing, before, {TMPFS: 10})
    assert later.not_in_before["tmpfs"].indices == list(range(10))
    assert later.moved == {} and later.found_intact == {"tmpfs": 10}
    gone = check_sentinels(before, nothing, {ANON: 5})
    assert gone.missing["anon"].indices == list(range(5)) and gone.ok is False
    assert gone.missing["anon"].ranges == [(0x80000, 0x85000)]


def test_broken_header_is_damage_only_where_a_kept_a_sentinel(tmp_path: Path) -> None:
    """Seen in CI on swsusp: after resume, a free page that was zero before held a copy of a
    sentinel page with its index words overwritten - a leftover of the restore, not A's data.
    It must not fail the check; the same broken header where A kept a sentinel page must, in
    the record's ok, the summary and the problems alike (one verdict, one reason)."""
    plan = SentinelPlan(TOKEN, 7, pages=3)
    pages = {0x10000 + i * PAGE_SIZE: sentinel_page(TOKEN, i, TMPFS, 7) for i in range(3)}
    pages.update({0x20000 + i * PAGE_SIZE: sentinel_page(TOKEN, i, ANON, 7) for i in range(3)})
    broken = bytearray(pages[0x11000])
    broken[16:24] = struct.pack("<II", 0xFC280323, 0x7F)  # index and region overwritten
    segs = [Seg(0, 0x100000)]
    before = write_core(tmp_path / "before.elf", segs, pages, 64)
    stale = write_core(tmp_path / "stale.elf", segs, {**pages, 0x77000: bytes(broken)}, 64)
    damaged = write_core(tmp_path / "damaged.elf", segs, {**pages, 0x11000: bytes(broken), 0x78000: pages[0x11000]}, 64)

    ok = check_resume(before, stale, plan)
    rec = ok.record.sentinels_after_resume
    assert ok.problems == [] and rec["ok"] and rec["stale_headers"] == ["0x77000"] and rec["damaged_headers"] == []

    bad = check_resume(before, damaged, plan)
    rec = bad.record.sentinels_after_resume
    assert not rec["ok"] and rec["damaged_headers"] == ["0x11000"]
    assert any("damaged header after resume (at 0x11000-0x12000" in p for p in bad.problems), bad.problems
    assert (0x11000, 0x12000) in bad.bad_ranges
    assert "1 damaged headers" in bad.record.sentinel_summary


def test_sentinel_in_half_covered_page_and_zero_tail(tmp_path: Path) -> None:
    page = sentinel_page(TOKEN, 3, ANON, 42)
    segs = [Seg(0x10000, 0x1800), Seg(0x20000, 0x3000, 0x1000)]
    path = write_core(tmp_path / "h.elf", segs, {0x11000: page[:0x800], 0x20000: page}, 64)
    with PhysImage.open(path) as img:
        scan = scan_sentinels(img, TOKEN)
    assert scan.paddr.tolist() == [0x11000, 0x20000]
    assert scan.bad_words.tolist() == [512, 0]  # the missing half reads as zeros


# -- memory map -----------------------------------------------------------------------------


def test_memory_map_priorities_and_edges() -> None:
    total = 16 * PAGE_SIZE
    classes = {
        "corrupted": [(5 * PAGE_SIZE + 100, 5 * PAGE_SIZE + 101)],
        "changed": [(4 * PAGE_SIZE, 6 * PAGE_SIZE)],
        "b_window": [(8 * PAGE_SIZE, 12 * PAGE_SIZE)],
        "unchanged": [(0, 14 * PAGE_SIZE), (100 * PAGE_SIZE, 200 * PAGE_SIZE)],
    }
    cells = memory_map(total, classes, cells=8)  # 2 pages a cell
    assert cells == ["unchanged", "unchanged", "corrupted", "unchanged",
                     "b_window", "b_window", "unchanged", "absent"]
    assert memory_map(total, classes, cells=16)[4:7] == ["changed", "corrupted", "unchanged"]
    assert class_page_counts(total, classes) == {
        "corrupted": 1, "changed": 1, "b_window": 4, "unchanged": 8, "absent": 2}


def test_memory_map_uneven_cells_and_empty() -> None:
    # cells of 3.33 bytes: [0, 3.33) [3.33, 6.67) [6.67, 10)
    assert memory_map(10, {"x": [(3, 4)]}, cells=3) == ["x", "x", "absent"]
    assert memory_map(10, {"x": [(0, 3)]}, cells=3) == ["x", "absent", "absent"]
    assert memory_map(10, {"x": [(4, 5)]}, cells=3, default="-") == ["-", "x", "-"]
    assert memory_map(10, {"x": [(7, 99)], "y": [(0, 10)]}, cells=3) == ["y", "y", "x"]
    assert memory_map(10, {"x": [(0, 10)]}, cells=20) == ["x"] * 20
    assert memory_map(10, {"x": []}, cells=2) == ["absent", "absent"]
    assert len(memory_map(256 * MiB, {"x": [(0, 1 << 32)]})) == 1024
    assert class_page_counts(3 * PAGE_SIZE + 1, {}) == {"absent": 4}
    with pytest.raises(ValueError):
        memory_map(0, {})


# -- real images ----------------------------------------------------------------------------


def _real_runs() -> list[Path]:
    if not RUNS.is_dir():
        return []
    return sorted(d for d in RUNS.iterdir()
                  if all(os.access(d / f, os.R_OK) for f in
                         ("snapshot-A-departure.elf", "snapshot-A-return.elf")))


@pytest.mark.skipif(not _real_runs(), reason="no run with both snapshots in reports/runs")
@pytest.mark.parametrize("run", _real_runs()[:3], ids=lambda d: d.name)
def test_real_snapshots_differ_somewhere_not_everywhere(run: Path) -> None:
    with PhysImage.open(run / "snapshot-A-departure.elf") as a, \
            PhysImage.open(run / "snapshot-A-return.elf") as b:
        pa, pb = a.present_ranges(), b.present_ranges()
        assert pa and pb  # QEMU #2 may have more memory than #1: not always equal
        itself = diff_ranges(a, a)
        assert itself.identical and itself.pages_compared == sum(e - s for s, e in pa) // PAGE_SIZE
        r = diff_ranges(a, b)
        assert r.pages_compared == sum(e - s for s, e in intersect_ranges(pa, pb)) // PAGE_SIZE
        assert 0 < r.pages_differing < r.pages_compared and r.pages_equal > 0
        assert len(r.differing) > 1
        assert r.only_a == subtract_ranges(pa, pb) and r.only_b == subtract_ranges(pb, pa)
        json.dumps(r.to_json())


@pytest.mark.skipif(not _real_runs() or not shutil.which("debugfs"),
                    reason="no run with snapshots, or no debugfs")
def test_real_dump_elf_maps_onto_snapshot(tmp_path: Path) -> None:
    run = next((d for d in _real_runs() if (d / "hibernation-disk.img").exists()), None)
    if run is None:
        pytest.skip("no hibernation disk")
    dump = tmp_path / "dump.elf"
    subprocess.run(["debugfs", "-R", f"dump -p /dump.elf {dump}", str(run / "hibernation-disk.img")],
                   check=True, capture_output=True)
    if not dump.exists() or dump.stat().st_size == 0:
        pytest.skip("no dump.elf on the disk")
    with PhysImage.open(dump) as d, PhysImage.open(run / "snapshot-A-departure.elf") as a:
        assert d.segments and d.present_ranges()
        assert intersect_ranges(d.present_ranges(), a.present_ranges()) == d.present_ranges()
        r = diff_ranges(a, d)
        assert r.only_b == [] and r.pages_equal > 0
        assert r.pages_compared == sum(e - s for s, e in d.present_ranges()) // PAGE_SIZE


def test_an_intact_twin_does_not_hide_a_damaged_copy(tmp_path: Path) -> None:
    """tmpfs page 3 has two copies (file page and page cache); the copy that is not in
    place gets damaged: the page is corrupted, though an intact copy sits in place."""
    seed = 0xC0FFEE
    page = sentinel_page(TOKEN, 3, TMPFS, seed)
    before = {0x13000: page, 0x40000: page}
    after = {0x13000: page, 0x40000: corrupt(page, 200)}
    segs = [Seg(0, 0x100000)]
    b = write_core(tmp_path / "b.elf", segs, before, 64)
    a = write_core(tmp_path / "a.elf", segs, after, 64)
    with PhysImage.open(b) as ib, PhysImage.open(a) as ia:
        check = check_sentinels(scan_sentinels(ib, TOKEN), scan_sentinels(ia, TOKEN), {TMPFS: 4})
    assert check.corrupted["tmpfs"].indices == [3]
    assert check.corrupted["tmpfs"].ranges == [(0x40000, 0x41000)]
    assert "tmpfs" not in check.moved
