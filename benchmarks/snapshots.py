"""Throughput of lab.memory's diff_ranges and scan_sentinels over 1 GiB images.

    python3 benchmarks/snapshots.py [--gib N] [--repeat N] [--dir DIR]

Writes two synthetic ELF64 cores of N GiB of "guest memory" (sparse: a quarter of the
pages hold data, the rest are holes that read as zeros) with a few thousand sentinel pages
and some pages that differ between the two, then times each operation several times. The
first run of each starts with the files dropped from the page cache (fsync +
POSIX_FADV_DONTNEED: "cold-ish", the data part comes from disk, holes cost nothing), the
others find them cached ("warm"). Before that, the files are read once untimed: on a VM the
first read after writing waits for the host's write-back and says nothing about this
code; a plain read() of both files is timed the same way as a reference. Every run opens the images afresh, so page-fault costs
of the mapping are always included. GB/s is physical memory covered per second (1 GB =
1e9 bytes).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.memory.diff import diff_ranges  # noqa: E402
from lab.memory.image import PhysImage  # noqa: E402
from lab.memory.ranges import PAGE_SIZE  # noqa: E402
from lab.memory.sentinels import check_sentinels, expected_bodies, scan_sentinels  # noqa: E402

TOKEN = 0x6B6A6C6162000001
SENTINELS = {0: 3000, 1: 1000}  # region -> pages
DIFF_PAGES = 1500
HEADER = 0x1000  # data starts here in the file


def write_core(path: Path, size: int) -> np.memmap:
    """An ELF64 core with one PT_LOAD [0, size) at file offset HEADER; returns a writable
    map of the memory part (the file stays sparse where nothing is written)."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 4, 3, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 7, HEADER, 0, 0, size, size, 0)
    with path.open("wb") as f:
        f.write(ehdr + phdr)
        f.truncate(HEADER + size)
    return np.memmap(path, dtype=np.uint8, mode="r+", offset=HEADER, shape=(size,))


def sentinel_pages(region: int, count: int, seed: int) -> np.ndarray:
    """(count, 1024) uint32 sentinel pages of `region`, indices 0..count-1."""
    idx = np.arange(count, dtype=np.uint32)
    pages = np.zeros((count, PAGE_SIZE // 4), dtype="<u4")
    head = np.frombuffer(b"KJLABSNT" + struct.pack("<Q", TOKEN), dtype="<u4")
    pages[:, :4] = head
    pages[:, 4], pages[:, 5], pages[:, 6] = idx, region, seed
    pages[:, 7:] = expected_bodies(idx, np.full(count, region), np.full(count, seed))
    return pages


def fill(mem_a: np.memmap, mem_b: np.memmap, rng: np.random.Generator) -> list[int]:
    """Same random data in every 4th MiB of both, sentinels at the same random pages,
    DIFF_PAGES random pages of b changed. Returns the changed page numbers."""
    size = mem_a.size
    block = rng.integers(0, 256, 1 << 20, dtype=np.uint8)
    for off in range(0, size, 4 << 20):
        mem_a[off:off + block.size] = block
        mem_b[off:off + block.size] = block
    npages = size // PAGE_SIZE
    total = sum(SENTINELS.values())
    spots = rng.choice(npages, total + DIFF_PAGES, replace=False)
    view_a = mem_a.reshape(npages, PAGE_SIZE)
    view_b = mem_b.reshape(npages, PAGE_SIZE)
    k = 0
    for region, count in SENTINELS.items():
        pages = sentinel_pages(region, count, 1234 + region).view(np.uint8)
        where = np.sort(spots[k:k + count])
        view_a[where] = pages
        view_b[where] = pages
        k += count
    changed = np.sort(spots[k:])
    view_b[changed] = rng.integers(0, 256, (changed.size, PAGE_SIZE), dtype=np.uint8)
    return changed.tolist()


def drop_cache(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_files(paths: list[Path]) -> None:
    """The reference: read() the files through, 16 MiB at a time, and nothing else."""
    buf = bytearray(16 << 20)
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            while os.readv(fd, [buf]):
                pass
        finally:
            os.close(fd)


def timed(label: str, runs: int, size: int, paths: list[Path], fn: Callable[[], object]) -> list[float]:
    rates = []
    for i in range(runs):
        if i == 0:
            drop_cache(paths)
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        rates.append(size / dt / 1e9)
        kind = "cold-ish" if i == 0 else "warm"
        print(f"  {label:<16} run {i + 1} ({kind:<8}): {dt:6.3f} s  {rates[-1]:6.2f} GB/s")
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the images (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    size = args.gib << 30
    with tempfile.TemporaryDirectory(prefix="kjlab-snapbench-", dir=args.dir) as tmp:
        pa, pb = Path(tmp) / "a.elf", Path(tmp) / "b.elf"
        t0 = time.perf_counter()
        mem_a, mem_b = write_core(pa, size), write_core(pb, size)
        changed = fill(mem_a, mem_b, np.random.default_rng(7))
        mem_a.flush()
        mem_b.flush()
        del mem_a, mem_b
        print(f"wrote 2 x {args.gib} GiB images in {time.perf_counter() - t0:.1f} s "
              f"({sum(SENTINELS.values())} sentinel pages, {len(changed)} changed pages) in {tmp}")

        def diff() -> None:
            with PhysImage.open(pa) as a, PhysImage.open(pb) as b:
                r = diff_ranges(a, b)
            assert r.pages_differing == len(changed), r.pages_differing

        def scan() -> None:
            with PhysImage.open(pa) as a:
                s = scan_sentinels(a, TOKEN)
            assert len(s) == sum(SENTINELS.values()) and bool(s.intact().all())

        drop_cache([pa, pb])
        t0 = time.perf_counter()
        read_files([pa, pb])
        print(f"settle: first read() after writing {time.perf_counter() - t0:.2f} s (untimed below: "
              "the freshly written data is still being written back under the VM)")
        print(f"diff_ranges over {args.gib} GiB (reads both images):")
        d = timed("diff_ranges", args.repeat, size, [pa, pb], diff)
        print(f"scan_sentinels over {args.gib} GiB:")
        s = timed("scan_sentinels", args.repeat, size, [pa], scan)
        print("reference: plain read() of both files (what the disk and page cache give):")
        ref = timed("read() a+b", args.repeat, size, [pa, pb], lambda: read_files([pa, pb]))
        with PhysImage.open(pa) as a, PhysImage.open(pb) as b:
            t0 = time.perf_counter()
            check = check_sentinels(scan_sentinels(a, TOKEN), scan_sentinels(b, TOKEN), SENTINELS)
            t_check = time.perf_counter() - t0
        print(f"two scans + check_sentinels: {t_check:.3f} s ({check.summary()})")
    warm_d, warm_s = statistics.median(d[1:] or d), statistics.median(s[1:] or s)
    print(f"\nsummary: diff_ranges cold-ish {d[0]:.2f} GB/s, warm median {warm_d:.2f} GB/s; "
          f"scan_sentinels cold-ish {s[0]:.2f} GB/s, warm median {warm_s:.2f} GB/s; "
          f"plain read() of both files cold-ish {ref[0]:.2f} GB/s "
          f"(goal >= 1 GB/s: {'met' if min(warm_d, warm_s) >= 1 else 'NOT met'} warm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
