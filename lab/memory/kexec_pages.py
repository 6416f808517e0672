"""Where kexec swapped A's pages: the entry list of A's loaded image, read from A's memory.

A preserve-context load keeps B's segments in *source* pages that A's kernel picked, and
`relocate_kernel` swaps each source page with its *destination* (B's window) on the way
out and again on the way back. The list is the kernel's own (kernel/kexec_core.c):
`kexec_image` points to a `struct kimage` whose first field, `head`, starts a chain of
words, each a physical address with flags in its low bits: IND_DESTINATION sets the
current destination, IND_SOURCE names the source page for it (the destination then
moves on a page), IND_INDIRECTION continues the list in another page, IND_DONE ends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..symbols import SymbolMap
from .image import PhysImage
from .ranges import PAGE_SIZE

IND_DESTINATION, IND_INDIRECTION, IND_DONE, IND_SOURCE = 0x1, 0x2, 0x4, 0x8
PAGE_MASK = ~(PAGE_SIZE - 1)
MAX_ENTRIES = 1 << 20  # 4 GiB of pages: a list longer than that is not a kexec list
# relocate_kernel's data in its control page, for the kernels whose relocate_kernel_*.S
# keeps it there (5.10-6.12): DATA(x) = KEXEC_CONTROL_CODE_MAX_SIZE (2048) + x, and
# CP_PA_SWAP_PAGE is DATA(0x18) on i386 and DATA(0x28) on x86_64.
SWAP_PAGE_SLOT = {4: 2048 + 0x18, 8: 2048 + 0x28}


class KexecListUnreadable(ValueError):
    """A's memory does not hold a kexec entry list the lab can follow (the reason says why)."""


@dataclass(frozen=True)
class KexecPages:
    """A's loaded kexec image: (destination, source) physical page pairs, in swap order."""

    pairs: tuple[tuple[int, int], ...]
    kimage: int  # the physical address of A's struct kimage


def read_word(img: PhysImage, addr: int, size: int) -> int:
    """A little-endian word of `size` bytes at physical `addr` (absent memory: an error)."""
    page = addr & PAGE_MASK
    if not img.present_mask(page, page + PAGE_SIZE)[0]:
        raise KexecListUnreadable(f"{addr:#x} is not in {img.path.name}")
    raw = img.pages(page, page + PAGE_SIZE).reshape(-1)
    off = addr - page
    return int.from_bytes(bytes(raw[off:off + size]), "little")


def kexec_pages(img: PhysImage, symbols: SymbolMap) -> KexecPages:
    """The pairs of A's loaded kexec image, from A's memory in `img` (where A's own memory
    is all in place: A running again, after its swap back). Raises KexecListUnreadable."""
    info = symbols.arch.info
    word = info.elf_class // 8
    at = symbols.physical_of("kexec_image")
    if at is None:
        raise KexecListUnreadable("no kexec_image in A's System.map")
    image_va = read_word(img, at, word)
    if image_va < info.direct_map:
        raise KexecListUnreadable(f"kexec_image is {image_va:#x}: no image loaded")
    kimage = image_va - info.direct_map
    pairs: list[tuple[int, int]] = []
    where, dest = kimage, None
    for _ in range(MAX_ENTRIES):
        entry = read_word(img, where, word)
        if entry == 0 or entry & IND_DONE:
            return KexecPages(tuple(pairs), kimage)
        addr = entry & PAGE_MASK
        if entry & IND_INDIRECTION:
            where = addr
            continue
        if entry & IND_DESTINATION:
            dest = addr
        elif entry & IND_SOURCE:
            if dest is None:
                raise KexecListUnreadable(f"a source page {addr:#x} before any destination")
            pairs.append((dest, addr))
            dest += PAGE_SIZE
        where += word
    raise KexecListUnreadable(f"no IND_DONE after {MAX_ENTRIES} entries")


def swap_page(img: PhysImage, control_page: int, word: int) -> int | None:
    """The physical address relocate_kernel keeps of its swap page in its control page's
    data (5.10-6.12 layouts), or None where that slot holds no page address."""
    slot = SWAP_PAGE_SLOT.get(word)
    if slot is None:
        return None
    try:
        value = read_word(img, control_page + slot, word)
    except KexecListUnreadable:
        return None
    return value if value and value % PAGE_SIZE == 0 else None
