"""Host-side surgery on a saved hibernation image between B's power-off and C's boot.

Test options only: they make known-bad images so the lab can show it catches them.
The image is read out of and written back into the ext2 disk with e2fsprogs' debugfs.
"""

from __future__ import annotations

import zlib
import logging
import re
import struct
from pathlib import Path

from .errors import BuildError, InfraError
from .proc import run

log = logging.getLogger(__name__)

class ImageReadError(InfraError):
    """The host could not read or write the image on the hibernation disk completely."""


PT_LOAD = 1
PAGE = 4096


def size_on_disk(disk: Path, name: str) -> int:
    """The size ext2 records for /name. debugfs exits 0 even when its request failed,
    so its answer is read, not its exit code."""
    out = run(["debugfs", "-R", f"stat /{name}", str(disk)], timeout=120)
    m = re.search(r"\bSize: (\d+)", out)
    if not m:
        raise ImageReadError(f"debugfs found no /{name} on {disk}: {out.strip()[-300:]}")
    return int(m.group(1))


def read_from_disk(disk: Path, name: str, dest: Path) -> Path:
    """Copy /name out of the ext2 disk; verified: the copy has the size the disk records."""
    want = size_on_disk(disk, name)
    dest.unlink(missing_ok=True)
    run(["debugfs", "-R", f"dump -p /{name} {dest}", str(disk)], timeout=600)
    got = dest.stat().st_size if dest.is_file() else -1
    if got != want:
        dest.unlink(missing_ok=True)
        raise ImageReadError(f"debugfs read {got} of the {want} bytes of /{name} on {disk} "
                             "(is the host's disk full?)")
    return dest


def write_to_disk(disk: Path, local: Path, name: str) -> None:
    run(["debugfs", "-w", "-R", f"rm /{name}", str(disk)], timeout=120)
    run(["debugfs", "-w", "-R", f"write {local} /{name}", str(disk)], timeout=600)
    if size_on_disk(disk, name) != local.stat().st_size:
        raise ImageReadError(f"debugfs did not write all of {local} to /{name} on {disk}")


def crc32_file(path: Path) -> int:
    """zlib's CRC-32 of a file, as guests/progs/kj-proof.c computes it in C."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def tamper_image_on_disk(disk: Path, name: str, paddr: int, work_dir: Path) -> int:
    """Flip one byte of /name at physical address `paddr` (a test option: the image
    damaged on the disk after it was saved and checked). Returns the file offset."""
    from .memory.image import PhysImage

    local = read_from_disk(disk, name, work_dir / f"{name}.tamper")
    try:
        with PhysImage.open(local) as img:
            seg = next((s for s in img.segments if s.paddr <= paddr < s.paddr + s.filesz), None)
            if seg is None:
                raise BuildError(f"{paddr:#x} is not in the saved image; it holds "
                                 + ", ".join(f"{s.paddr:#x}-{s.paddr + s.filesz:#x}" for s in img.segments))
            offset = seg.offset + paddr - seg.paddr
        with open(local, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0x01]))
        write_to_disk(disk, local, name)
    finally:
        local.unlink(missing_ok=True)
    return offset


def _layout(data: bytes) -> tuple[int, int, int, int]:
    """(e_phoff, e_phentsize, e_phnum, class) of a little-endian ELF file."""
    if data[:4] != b"\x7fELF":
        raise BuildError("not an ELF file")
    elf_class = data[4]
    if elf_class == 1:
        phoff, = struct.unpack_from("<I", data, 28)
        phentsize, phnum = struct.unpack_from("<HH", data, 42)
    else:
        phoff, = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return phoff, phentsize, phnum, elf_class


def _phdrs(data: bytes) -> tuple[int, list[list[int]]]:
    phoff, phentsize, phnum, elf_class = _layout(data)
    fmt = "<IIIIIIII" if elf_class == 1 else "<IIQQQQQQ"
    out = []
    for i in range(phnum):
        out.append(list(struct.unpack_from(fmt, data, phoff + i * phentsize)))
    return elf_class, out


def split_pt_loads(src: Path, dst: Path, count: int) -> str:
    """Rewrite src so that its PT_LOADs become `count` page-aligned pieces of the same memory.

    Data stays where it is; a new program header table is appended and e_phoff points at it.
    """
    data = bytearray(src.read_bytes())
    elf_class, phdrs = _phdrs(bytes(data))
    # ELF32 phdr: type, offset, vaddr, paddr, filesz, memsz, flags, align
    # ELF64 phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align
    idx = (1, 2, 3, 4, 5) if elf_class == 1 else (2, 3, 4, 5, 6)
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    others = [p for p in phdrs if p[0] != PT_LOAD]
    pieces_per_load = _shares([p[idx[3]] for p in loads], count)
    new_loads = []
    for p, pieces in zip(loads, pieces_per_load):
        off, vaddr, paddr, filesz, memsz = (p[i] for i in idx)
        chunk = -(-memsz // pieces // PAGE) * PAGE
        start = 0
        while start < memsz:
            size = min(chunk, memsz - start)
            q = list(p)
            q[idx[0]], q[idx[1]], q[idx[2]] = off + start, vaddr + start, paddr + start
            q[idx[3]] = max(0, min(size, filesz - start))
            q[idx[4]] = size
            new_loads.append(q)
            start += size
    fmt = "<IIIIIIII" if elf_class == 1 else "<IIQQQQQQ"
    table = b"".join(struct.pack(fmt, *p) for p in others + new_loads)
    phoff = len(data) + (-len(data) % 8)
    data += b"\0" * (phoff - len(data)) + table
    if elf_class == 1:
        struct.pack_into("<I", data, 28, phoff)
        struct.pack_into("<H", data, 44, len(others) + len(new_loads))
    else:
        struct.pack_into("<Q", data, 32, phoff)
        struct.pack_into("<H", data, 56, len(others) + len(new_loads))
    dst.write_bytes(bytes(data))
    return f"{len(loads)} PT_LOADs -> {len(new_loads)}"


def _shares(sizes: list[int], count: int) -> list[int]:
    """Split `count` pieces over loads in proportion to their sizes (at least one each)."""
    if count < len(sizes):
        raise BuildError(f"cannot split {len(sizes)} PT_LOADs into fewer ({count})")
    shares = [1] * len(sizes)
    for _ in range(count - len(sizes)):
        i = max(range(len(sizes)), key=lambda k: sizes[k] / shares[k])
        shares[i] += 1
    return shares


def split_image_on_disk(disk: Path, name: str, count: int, work_dir: Path) -> str:
    original = read_from_disk(disk, name, work_dir / f"{name}.orig")
    split = work_dir / f"{name}.split"
    detail = split_pt_loads(original, split, count)
    write_to_disk(disk, split, name)
    original.unlink()
    split.unlink()
    log.info("split %s on %s: %s", name, disk, detail)
    return detail


def corrupt_sentinel_pages(path: Path, token: int, count: int) -> list[int]:
    """Flip one word in the body of the first `count` sentinel pages of an image file
    (a test option: a saved image damaged on the disk). Returns their physical addresses."""
    from .memory.image import PhysImage
    from .memory.sentinels import scan_sentinels

    with PhysImage.open(path) as img:
        scan = scan_sentinels(img, token)
        # Pages of the anonymous region with one copy only: a tmpfs page may have an
        # intact twin in the page cache, which would make the damage ambiguous.
        unique = [v[0][0] for (region, _), v in scan.by_key().items() if region == 1 and len(v) == 1]
        targets = sorted(unique)[:count]
        offsets = []
        for paddr in targets:
            seg = next(s for s in img.segments if s.paddr <= paddr and paddr + PAGE <= s.paddr + s.filesz)
            offsets.append(seg.offset + paddr - seg.paddr)
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off + 1024)
            word = f.read(4)
            f.seek(off + 1024)
            f.write(bytes(b ^ 0xFF for b in word))
    return targets


def corrupt_image_on_disk(disk: Path, name: str, token: int, count: int, work_dir: Path) -> list[int]:
    local = read_from_disk(disk, name, work_dir / f"{name}.corrupt")
    try:
        hit = corrupt_sentinel_pages(local, token, count)
        if len(hit) < count:
            raise BuildError(f"only {len(hit)} sentinel pages in {name} to corrupt, {count} asked")
        write_to_disk(disk, local, name)
    finally:
        local.unlink(missing_ok=True)
    return hit
