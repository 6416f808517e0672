"""A kernel's log read from a memory snapshot, for a guest that stopped answering.

A kernel that dies while its console is suspended (during a jump) or silenced leaves
nothing on the serial line, but its printk ring buffer is still in RAM. This module
finds it in a QMP dump (or any ELF of physical memory, lab.memory.image) and has
kexec-tools' `vmcore-dmesg` decode it:

1. the kernel's System.map gives `vmcoreinfo_note`, a pointer variable; on i386 a
   direct-map address is physical + PAGE_OFFSET (0xC0000000); on x86_64 the kernel's own
   variables are at physical + __START_KERNEL_map (0xffffffff80000000) + phys_base (0
   for a kernel that runs where it was linked; kernel B runs where kexec put it, and
   each 2 MiB step is tried until VMCOREINFO's NUMBER(phys_base) agrees) and its allocations in the direct map at physical +
   0xffff888000000000 (4-level paging) or 0xff11000000000000 (5-level), so the pointer
   and the ELF note it points to are read straight from the dump (lab.arch). The note is the kernel's own
   VMCOREINFO (filled at boot: crash_save_vmcoreinfo_init), the same that kdump hands
   to makedumpfile and vmcore-dmesg;
2. VMCOREINFO names the ring buffer (`SYMBOL(prb)`) and the layout of its structures
   (OFFSET/SIZE lines), so the pages the log lives on are found without knowing the
   kernel version: the `prb` pointer, the ring buffer, its descriptors, infos and text;
3. those pages, the note and its pointer are written to a small ELF core (PT_NOTE + PT_LOADs with
   both the virtual and the physical address) that vmcore-dmesg reads as it reads a
   /proc/vmcore. The file stays in the run directory: `vmcore-dmesg FILE` re-reads it,
   and so does this module (its PT_LOADs carry physical addresses too), which is how
   the tests hold a real recorded log in 10 KB (tests/data/memory-logs).

Why this way rather than QEMU's `-device vmcoreinfo`: that needs the guest's fw_cfg
driver (CONFIG_FW_CFG_SYSFS, not in the lab's kernels: adding it rebuilds every kernel),
and the guest writes one address there at boot - after a jump kernel B's boot overwrites
A's. The System.map names the kernel explicitly, and a map that does not fit the memory
is caught (the note's SYMBOL(prb) must be the map's prb). Why vmcore-dmesg rather than a
ring-buffer walker of our own: the record format is the kernel's business and changes
(6.10 added last_finalized_seq); kexec-tools follows it, driven by the same VMCOREINFO.

Which kernel a dump shows is read from the log itself (`kjlab.role=` on its command
line), not assumed. A and B/C of one build share their addresses, so the map fits
whichever kernel's image sits at them: B's while B runs, and - measured - C's in the
hibernate flow's return snapshot (taken at A's jump-back entry): there A's own kernel
pages are still where kexec swapped them before the jump, and A's relocate code swaps
them back only after that instruction. So A's buffer is read from a dump taken once A
has run again (a resume that then hangs), and the return snapshot yields C's log.
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..arch import Arch
from ..errors import CommandFailed, KernelLogUnreadable
from ..proc import run
from ..symbols import SymbolMap
from .image import PhysImage
from .ranges import PAGE_SIZE, Range, normalize_ranges

log = logging.getLogger(__name__)

NOTE_MAX = 4096  # VMCOREINFO_NOTE_SIZE rounds to a page or so; 4 KiB is plenty
DIRECT_MAP_5LEVEL = 0xFF11000000000000  # x86_64's PAGE_OFFSET with 5-level paging (LA57), no KASLR
PHYS_ALIGN_X86_64 = 0x200000  # where an x86_64 kernel may run: CONFIG_PHYSICAL_ALIGN (kexec-jump-x86_64.config)
ROLE_RE = re.compile(r"Kernel command line:.*\bkjlab\.role=(\w+)")
VMCOREINFO_NAME = b"VMCOREINFO"
VMCORE_DMESG = "vmcore-dmesg"


@dataclass(frozen=True)
class Vmcoreinfo:
    note: bytes  # the whole ELF note (header, name, text), as vmcore-dmesg wants it
    fields: dict[str, str]  # KEY=value lines: OSRELEASE, SYMBOL(prb), OFFSET(...), ...
    pointer: int = 0  # where the kernel keeps the note's address (vmcoreinfo_note)
    address: int = 0  # where the note is
    space: AddressSpace | None = None  # how the kernel's virtual addresses map to physical ones

    def pages(self) -> list[Range]:
        """The pages of the pointer and of the note: with them a file of the log's pages
        is a dump this module reads again."""
        size = self.space.pointer_size if self.space else 4
        return _pages_of([(self.pointer, size), (self.address, len(self.note))]) if self.pointer else []

    def number(self, key: str) -> int:
        """A SYMBOL (hex) or OFFSET/SIZE/LENGTH/NUMBER (decimal) value."""
        try:
            value = self.fields[key]
            return int(value, 16) if key.startswith("SYMBOL(") else int(value)
        except (KeyError, ValueError) as e:
            raise KernelLogUnreadable(f"VMCOREINFO has no usable {key}") from e


@dataclass(frozen=True)
class MemoryLog:
    """A kernel log read from memory: the decoded text and where it came from."""

    text: str
    role: str  # the kjlab.role= of the kernel's command line in its log ("A", "B", "C"), or ""
    release: str  # VMCOREINFO's OSRELEASE
    snapshot: Path  # the dump it was read from
    pages: Path  # the small ELF vmcore-dmesg read (the log's pages and the VMCOREINFO note)
    system_map: Path

    @property
    def lines(self) -> list[str]:
        return self.text.rstrip("\n").split("\n") if self.text.strip() else []

    @property
    def kernel(self) -> str:
        return f"kernel {self.role}" if self.role else "the kernel"


@dataclass(frozen=True)
class AddressSpace:
    """A kernel's virtual -> physical translation for what this module reads: the direct
    map (both arches) and, on x86_64, the kernel image's own mapping."""

    arch: Arch
    direct_map: int  # PAGE_OFFSET
    phys_base: int = 0  # x86_64: where the kernel runs less where it was linked

    @classmethod
    def of(cls, arch: Arch, direct_map: int | None = None) -> AddressSpace:
        return cls(arch, arch.info.direct_map if direct_map is None else direct_map)

    @property
    def pointer_size(self) -> int:
        return self.arch.info.elf_class // 8

    def physical(self, vaddr: int, size: int) -> int:
        info = self.arch.info
        if info.kernel_map is not None and vaddr >= info.kernel_map:
            return vaddr - info.kernel_map + self.phys_base
        phys = vaddr - self.direct_map
        if phys < 0 or phys + size > info.direct_map_size:
            also = " or the kernel image's mapping" if info.kernel_map is not None else ""
            raise KernelLogUnreadable(f"{vaddr:#x} is not in the {self.arch} direct map{also}")
        return phys

    def read(self, img: PhysImage, vaddr: int, size: int) -> bytes:
        """`size` bytes at a kernel virtual address; absent memory is an error, not zeros."""
        phys = self.physical(vaddr, size)
        start, end = phys & ~(PAGE_SIZE - 1), (phys + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if not img.present_mask(start, end).all():
            raise KernelLogUnreadable(f"{img.path.name} lacks physical {start:#x}-{end:#x} ({vaddr:#x})")
        return img.pages(start, end).tobytes()[phys - start:phys - start + size]

    def pointer(self, img: PhysImage, vaddr: int) -> int:
        fmt = "<Q" if self.pointer_size == 8 else "<I"
        value: int = struct.unpack(fmt, self.read(img, vaddr, self.pointer_size))[0]
        return value


def read_virt(img: PhysImage, vaddr: int, size: int, arch: Arch = Arch.I386) -> bytes:
    """`size` bytes at a kernel virtual address of `arch`; absent memory is an error, not zeros."""
    return AddressSpace.of(arch).read(img, vaddr, size)


def _u32(img: PhysImage, space: AddressSpace, vaddr: int) -> int:
    value: int = struct.unpack("<I", space.read(img, vaddr, 4))[0]
    return value


def find_vmcoreinfo(img: PhysImage, symbols: SymbolMap) -> Vmcoreinfo:
    """The kernel's VMCOREINFO note, through its `vmcoreinfo_note` pointer. Raises
    KernelLogUnreadable when the memory does not hold it, or holds another kernel's.

    An x86_64 kernel that kexec placed elsewhere than it was linked (kernel B: loaded at
    the lowest fitting address of its window) runs at a phys_base other than 0: each
    kernel-aligned (2 MiB) phys_base is tried until the note is found and its
    NUMBER(phys_base) says the same."""
    where = symbols.address_of("vmcoreinfo_note")
    if where is None:
        raise KernelLogUnreadable("the System.map has no vmcoreinfo_note (a kernel without CRASH_CORE)")
    base = AddressSpace.of(symbols.arch)
    if symbols.arch.info.kernel_map is None:
        return _vmcoreinfo_in(img, symbols, where, base)
    first: KernelLogUnreadable | None = None
    ram_end = max((end for _, end in img.present_ranges()), default=0)
    for phys_base in range(0, ram_end, PHYS_ALIGN_X86_64):
        try:
            return _vmcoreinfo_in(img, symbols, where, replace(base, phys_base=phys_base))
        except KernelLogUnreadable as e:
            first = first or e
    raise first or KernelLogUnreadable(f"{img.path.name} holds no memory")


def _vmcoreinfo_in(img: PhysImage, symbols: SymbolMap, where: int, space: AddressSpace) -> Vmcoreinfo:
    note_at = space.pointer(img, where)
    if not note_at:
        raise KernelLogUnreadable("vmcoreinfo_note is NULL: the kernel had not set it up")
    if symbols.arch is Arch.X86_64 and DIRECT_MAP_5LEVEL <= note_at < space.direct_map:
        space = replace(space, direct_map=DIRECT_MAP_5LEVEL)  # the kernel runs with 5-level paging
    head = space.read(img, note_at, NOTE_MAX)
    namesz, descsz, _type = struct.unpack("<3I", head[:12])
    name_end = 12 + ((namesz + 3) & ~3)
    if head[12:12 + namesz].rstrip(b"\0") != VMCOREINFO_NAME or name_end + descsz > NOTE_MAX:
        raise KernelLogUnreadable(f"no VMCOREINFO note at {note_at:#x} (vmcoreinfo_note points elsewhere)")
    text = head[name_end:name_end + descsz].decode(errors="replace")
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    info = Vmcoreinfo(head[:name_end + ((descsz + 3) & ~3)], fields, where, note_at, space)
    prb = symbols.address_of("prb")
    if "OSRELEASE" not in fields or (prb is not None and info.number("SYMBOL(prb)") != prb):
        raise KernelLogUnreadable("the VMCOREINFO in memory is not of this System.map's kernel")
    said = fields.get("NUMBER(phys_base)")
    if said is not None and int(said, 0) != space.phys_base:
        raise KernelLogUnreadable(f"the VMCOREINFO says phys_base {said}, not {space.phys_base:#x}")
    return info


def printk_ranges(img: PhysImage, info: Vmcoreinfo) -> list[Range]:
    """Virtual page ranges holding the printk ring buffer (the lockless one, 5.10+), as
    VMCOREINFO describes it: what vmcore-dmesg reads."""
    if "SYMBOL(prb)" not in info.fields:
        raise KernelLogUnreadable("VMCOREINFO has no SYMBOL(prb): a printk older than 5.10 is not supported")
    space = info.space or AddressSpace.of(Arch.I386)
    n = info.number
    ptr_size = space.pointer_size
    prb_var = n("SYMBOL(prb)")
    rb = space.pointer(img, prb_var)
    desc_ring = rb + n("OFFSET(printk_ringbuffer.desc_ring)")
    text_ring = rb + n("OFFSET(printk_ringbuffer.text_data_ring)")
    count_bits = _u32(img, space, desc_ring + n("OFFSET(prb_desc_ring.count_bits)"))
    size_bits = _u32(img, space, text_ring + n("OFFSET(prb_data_ring.size_bits)"))
    if not (0 < count_bits < 24 and 0 < size_bits < 28):
        raise KernelLogUnreadable(f"implausible ring buffer at {rb:#x} (count_bits {count_bits}, size_bits {size_bits})")
    count = 1 << count_bits
    pieces = [
        (prb_var, ptr_size),
        (rb, n("SIZE(printk_ringbuffer)")),
        (space.pointer(img, desc_ring + n("OFFSET(prb_desc_ring.descs)")), count * n("SIZE(prb_desc)")),
        (space.pointer(img, desc_ring + n("OFFSET(prb_desc_ring.infos)")), count * n("SIZE(printk_info)")),
        (space.pointer(img, text_ring + n("OFFSET(prb_data_ring.data)")), 1 << size_bits),
    ]
    if "SYMBOL(clear_seq)" in info.fields:
        pieces.append((n("SYMBOL(clear_seq)"), 64))
    return _pages_of(pieces)


def _pages_of(pieces: Sequence[tuple[int, int]]) -> list[Range]:
    mask = PAGE_SIZE - 1
    return normalize_ranges((a & ~mask, (a + size + mask) & ~mask) for a, size in pieces)


@dataclass(frozen=True)
class _ElfLayout:
    """What an ELF core's header and program headers look like in one ELF class."""

    ei_class: int  # EI_CLASS: 1 ELFCLASS32, 2 ELFCLASS64
    machine: int  # e_machine: 3 EM_386, 62 EM_X86_64
    ehdr: str  # struct format of the header after e_ident
    ehsize: int
    phentsize: int
    phdr_fields: str  # struct format of a program header, fields in phdr()'s order below
    flags_second: bool  # ELF64 puts p_flags right after p_type

    def phdr(self, p_type: int, offset: int, vaddr: int, paddr: int, size: int, flags: int, align: int) -> bytes:
        if self.flags_second:
            return struct.pack(self.phdr_fields, p_type, flags, offset, vaddr, paddr, size, size, align)
        return struct.pack(self.phdr_fields, p_type, offset, vaddr, paddr, size, size, flags, align)


_ELF_LAYOUTS = {
    32: _ElfLayout(1, 3, "<HHIIIIIHHHHHH", 52, 32, "<8I", flags_second=False),
    64: _ElfLayout(2, 62, "<HHIQQQIHHHHHH", 64, 56, "<IIQQQQQQ", flags_second=True),
}


def write_log_elf(img: PhysImage, info: Vmcoreinfo, ranges: Sequence[Range], out: Path) -> Path:
    """An ELF core (ELF32 i386 or ELF64 x86_64, the kernel's own) of only `ranges`
    (virtual) and the VMCOREINFO note. Each PT_LOAD carries the virtual and the physical
    address, so vmcore-dmesg reads it and lab.memory.image reads it back as a (small) dump."""
    space = info.space or AddressSpace.of(Arch.I386)
    ranges = normalize_ranges(ranges)
    nph = 1 + len(ranges)
    layout = _ELF_LAYOUTS[space.arch.info.elf_class]
    phoff = layout.ehsize
    note_off = phoff + layout.phentsize * nph
    header = (b"\x7fELF" + bytes([layout.ei_class, 1, 1]) + bytes(9)
              + struct.pack(layout.ehdr, 4, layout.machine, 1, 0, phoff, 0, 0, layout.ehsize, layout.phentsize, nph,
                            0, 0, 0))
    phdr = layout.phdr
    data_off = (note_off + len(info.note) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    phdrs = [phdr(4, note_off, 0, 0, len(info.note), 0, 4)]
    offset = data_off
    for start, end in ranges:
        phdrs.append(phdr(1, offset, start, space.physical(start, end - start), end - start, 7, PAGE_SIZE))
        offset += end - start
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header + b"".join(phdrs) + info.note)
        f.write(bytes(data_off - f.tell()))
        for start, end in ranges:
            f.write(space.read(img, start, end - start))
    tmp.replace(out)
    return out


def vmcore_dmesg(elf: Path, timeout: float = 60) -> str:
    """kexec-tools' vmcore-dmesg on an ELF core: the kernel log, one record a line."""
    # /usr/sbin is not on an ordinary user's PATH on Debian
    tool = shutil.which(VMCORE_DMESG) or shutil.which(VMCORE_DMESG, path="/usr/sbin:/sbin")
    if tool is None:
        raise KernelLogUnreadable(f"{VMCORE_DMESG} is not installed (Debian package kexec-tools; see bootstrap.sh)")
    try:
        return run([tool, str(elf)], timeout=timeout)
    except CommandFailed as e:
        raise KernelLogUnreadable(f"{VMCORE_DMESG} could not read {elf.name}: {e.log_tail.strip()[-300:]}") from e


def read_kernel_log(snapshot: Path, system_maps: Sequence[Path], out: Path, arch: Arch = Arch.I386) -> MemoryLog:
    """The log of the `arch` kernel whose System.map fits the memory in `snapshot` (the first
    of `system_maps` that does). Writes the log's pages to `out` (an ELF, see write_log_elf)."""
    problems = []
    with PhysImage.open(snapshot) as img:
        for path in dict.fromkeys(system_maps):
            try:
                info = find_vmcoreinfo(img, SymbolMap.load(path, arch=arch))
                write_log_elf(img, info, [*printk_ranges(img, info), *info.pages()], out)
            except (KernelLogUnreadable, OSError) as e:
                problems.append(f"{path.parent.name}/{path.name}: {e}")
                continue
            text = vmcore_dmesg(out)
            role = ROLE_RE.search(text)
            log.info("%s: %d lines of %s's log read from memory", snapshot.name, text.count("\n"),
                     role.group(1) if role else "a kernel")
            return MemoryLog(text, role.group(1) if role else "", info.fields.get("OSRELEASE", ""), snapshot, out, path)
    raise KernelLogUnreadable("no kernel log found in memory: " + ("; ".join(problems) or "no System.map given"))
