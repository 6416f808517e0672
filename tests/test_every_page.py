"""Every page A owns (lab.memory.kexec_pages, .low_memory, .resumed), on ELF cores built
here with the kernel's own layouts: kexec's entry list as kernel/kexec_core.c writes it,
A's e820 lines as a real boot log prints them, the real mode area where real_mode_header
points."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.arch import Arch
from lab.memory.image import PhysImage
from lab.memory.kexec_pages import IND_DESTINATION, IND_DONE, IND_INDIRECTION, IND_SOURCE, KexecListUnreadable, kexec_pages
from lab.memory.low_memory import (
    LowMemoryLayout, a_ram_map, changed_low_pages, parse_e820, real_mode_area, reserved_low,
)
from lab.memory.resumed import ResumedMoment, prove_resumed
from lab.symbols import SymbolMap
from tests.test_snapshots import Seg, write_core

PAGE = 4096
MiB = 1 << 20
DIRECT = 0xC0000000
A_END = 8 * MiB
KEXEC_IMAGE = 0xC0600000  # the symbol (i386: in the direct map)
KIMAGE = 0x700000  # struct kimage, physical
INDIRECT = 0x701000  # a second page of entries
CONTROL = 0x702000  # kexec's control page (A's jump-back entry)
SWAP = 0x703000
STACK_SP = DIRECT + 0x705F00  # A's kernel stack: 0x704000-0x706000 (8 KiB)
REAL_MODE_HEADER = 0xC0601100
WINDOW = (MiB, 2 * MiB)  # B's window (kexec destinations)
SOURCES = 0x500000  # where A keeps B's segments
BOOT_LOG_7_2 = "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] System RAM\n"
BOOT_LOG = """[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000000fffcfff] usable
[    0.019581] Kernel command line: console=ttyS0 kjlab.role=B
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
"""


@pytest.fixture
def symbols(tmp_path: Path) -> SymbolMap:
    path = tmp_path / "System.map"
    path.write_text(f"{KEXEC_IMAGE:08x} B kexec_image\n{REAL_MODE_HEADER:08x} B real_mode_header\n"
                    "c1700000 D real_mode_blob\nc1701e00 D real_mode_blob_end\nc1050000 T syscore_resume\n")
    return SymbolMap.load(path, arch=Arch.I386)


def word(value: int) -> bytes:
    return value.to_bytes(4, "little")


def page(fill: int) -> bytes:
    return bytes([fill]) * PAGE


def kernel_pages(pairs: list[tuple[int, int]]) -> dict[int, bytes]:
    """A's kexec image: kexec_image -> kimage; head; one destination run of `pairs`,
    continued through an indirection page; the swap page's address in the control page."""
    sym = bytearray(PAGE)
    sym[:4] = word(KIMAGE + DIRECT)
    first = bytearray(PAGE)
    first[:4] = word(pairs[0][0] | IND_DESTINATION)
    first[4:8] = word(INDIRECT | IND_INDIRECTION)
    rest = bytearray(PAGE)
    entries = [word(src | IND_SOURCE) for _, src in pairs] + [word(IND_DONE)]
    rest[:4 * len(entries)] = b"".join(entries)
    control = bytearray(PAGE)
    control[2048 + 0x18:2048 + 0x1C] = word(SWAP)
    rm = bytearray(PAGE)
    rm[0x100:0x104] = word(0x98000 + DIRECT)
    return {KEXEC_IMAGE - DIRECT: bytes(sym), KIMAGE: bytes(first), INDIRECT: bytes(rest), CONTROL: bytes(control),
            REAL_MODE_HEADER - DIRECT - 0x100: bytes(rm)}


def core(tmp_path: Path, name: str, pages: dict[int, bytes]) -> Path:
    return write_core(tmp_path / f"{name}.elf", [Seg(0, A_END)], pages, elf_class=32)


def layout(cpus: int = 1, release: str = "6.1.192", cmdline: str = "") -> LowMemoryLayout:
    reserved, why = reserved_low(release, cmdline)
    return LowMemoryLayout(parse_e820(BOOT_LOG), (0x98000, 0x9A000), 0x9FC00, reserved, why, cpus)


def test_kexec_list_is_read_as_the_kernel_writes_it(tmp_path: Path, symbols: SymbolMap) -> None:
    pairs = [(WINDOW[0] + i * PAGE, SOURCES + i * PAGE) for i in range(3)]
    with PhysImage.open(core(tmp_path, "a", kernel_pages(pairs))) as img:
        got = kexec_pages(img, symbols)
    assert got.pairs == tuple(pairs) and got.kimage == KIMAGE


def test_no_loaded_image_is_unreadable_not_empty(tmp_path: Path, symbols: SymbolMap) -> None:
    with PhysImage.open(core(tmp_path, "a", {})) as img, pytest.raises(KexecListUnreadable, match="no image loaded"):
        kexec_pages(img, symbols)


def test_e820_is_a_s_first_map_only() -> None:
    e820 = parse_e820(BOOT_LOG)
    assert e820 == (((0, 0x9FC00), "usable"), ((0x9FC00, 0xA0000), "reserved"), ((0xF0000, 0x100000), "reserved"),
                    ((0x100000, 0xFFFD000), "usable"))


def test_reservation_follows_the_release_and_reservelow() -> None:
    assert reserved_low("6.1.192", "")[0] == MiB
    assert reserved_low("5.10.262", "reservelow=640K")[0] == 640 << 10
    assert reserved_low("5.10.262", "reservelow=640K reservelow=4K") == (
        4096, "5.10.262 reserves only the first 4 KiB (reservelow=4K)")
    assert reserved_low("5.10.262", "")[0] == 64 << 10


def test_real_mode_area_is_where_a_s_header_points(symbols: SymbolMap) -> None:
    assert real_mode_area(0x98000 + DIRECT, symbols) == (0x98000, 0x98000 + 0x1E00)  # the blob's size
    assert real_mode_area(0, symbols) is None  # not read (a replay, an old kernel)
    assert symbols.physical_of("real_mode_header") == REAL_MODE_HEADER - DIRECT


@pytest.mark.parametrize("cpus,used", [(1, False), (2, True)])
def test_low_pages_are_named_by_owner(tmp_path: Path, cpus: int, used: bool) -> None:
    before = core(tmp_path, "before", {0: page(1), 0x98000: page(2), 0xB8000: page(3), 0xF6000: page(4),
                                       0x13000: page(5), 0x9F000: page(6)})
    after = core(tmp_path, "after", {0: page(9), 0x98000: page(9), 0xB8000: page(9), 0xF6000: page(9),
                                     0x13000: page(9), 0x9F000: page(9)})
    with PhysImage.open(before) as a, PhysImage.open(after) as b:
        got = {p.address: p for p in changed_low_pages(a, b, layout(cpus))}
    assert {a: p.owner.name for a, p in got.items()} == {
        0: "page 0 (real-mode IVT, BIOS data area)", 0x13000: "reserved by A, unused", 0x98000: "A's real-mode area",
        0x9F000: "EBDA", 0xB8000: "VGA memory", 0xF6000: "BIOS ROM area"}
    assert [a for a, p in got.items() if p.owner.used_after_resume] == ([0x98000] if used else [])
    assert got[0x13000].a_had == "data" and "first difference at +0x000: 05" in got[0x13000].first_difference


def test_before_5_13_a_s_allocator_pages_are_a_s(tmp_path: Path) -> None:
    before = core(tmp_path, "before", {0x13000: page(5)})
    after = core(tmp_path, "after", {0x13000: page(9)})
    with PhysImage.open(before) as a, PhysImage.open(after) as b:
        (p,) = changed_low_pages(a, b, layout(release="5.10.262", cmdline="reservelow=4K"))
    assert p.owner.name == "A's page allocator" and p.owner.used_after_resume and "reservelow=4K" in p.owner.why


def resumed_run(tmp_path: Path, symbols: SymbolMap, *, swap_ok: bool = True, lost: int | None = None,
                low: int | None = None, cpus: int = 1) -> tuple[object, object]:
    """Departure, return and A running again as relocate_kernel leaves them: three window
    pages swapped with their sources, A's own writes in the control, swap and stack pages."""
    pairs = [(WINDOW[0] + i * PAGE, SOURCES + i * PAGE) for i in range(3)]
    kern = kernel_pages(pairs)
    a_data = {0x300000 + i * PAGE: page(0x30 + i) for i in range(4)}
    a_window = [page(0x40 + i) for i in range(3)]
    b_kernel = [page(0x50 + i) for i in range(3)]
    b_state = [page(0x60 + i) for i in range(3)]
    low_before = {0x13000: page(5), 0x98000: page(2)}
    # departure: B's kernel in the window, A's window pages in the sources
    dep = {**kern, **a_data, **low_before, **{d: b_kernel[i] for i, (d, _) in enumerate(pairs)},
           **{s: a_window[i] for i, (_, s) in enumerate(pairs)}}
    # return: C's load put the image back; the window holds what B left; low memory is C's
    ret = {**dep, **{d: b_state[i] for i, (d, _) in enumerate(pairs)}, 0x13000: page(0x77)}
    if low is not None:
        ret[low] = page(0x78)
    if lost is not None:
        ret[lost] = page(0x79)
    # A runs again: swapped back; A wrote its control, swap and stack pages
    res = {**ret, **{d: a_window[i] for i, (d, _) in enumerate(pairs)},
           **{s: b_state[i] for i, (_, s) in enumerate(pairs)},
           CONTROL: kern[CONTROL][:100] + b"\x01" + kern[CONTROL][101:], SWAP: a_window[2], 0x705000: page(0x11)}
    if not swap_ok:  # the image gave back another page where kexec kept A's window page
        ret[pairs[1][1]] = page(0x99)
        res[pairs[1][0]] = page(0x99)
    moment = ResumedMoment(core(tmp_path, "res", res), STACK_SP, CONTROL, "syscore_resume")
    proof = prove_resumed(core(tmp_path, "dep", dep), core(tmp_path, "ret", ret), moment, [(0, A_END)],
                          layout(cpus), symbols)
    return proof, pairs


def test_every_page_of_a_when_it_runs_again(tmp_path: Path, symbols: SymbolMap) -> None:
    proof, _ = resumed_run(tmp_path, symbols)
    assert proof.holds and not proof.missing, proof.problems  # type: ignore[attr-defined]
    assert proof.pages == A_END // PAGE and proof.window_back == 3 and proof.sources_kept == 3  # type: ignore[attr-defined]
    assert [(a, w.split(" (")[0]) for a, w in proof.own_writes] == [  # type: ignore[attr-defined]
        (CONTROL, "kexec's control page"), (SWAP, "kexec's swap page"), (0x705000, "A's kernel stack")]
    assert [(p.address, p.owner.name) for p in proof.low] == [(0x13000, "reserved by A, unused")]  # type: ignore[attr-defined]
    # equal: all but the six kexec pages, the three own writes and the one low page
    assert proof.equal == A_END // PAGE - 6 - 3 - 1  # type: ignore[attr-defined]
    assert proof.equal + proof.window_back + proof.sources_kept + len(proof.low) + len(proof.own_writes) \
        == proof.pages  # type: ignore[attr-defined]
    assert proof.record().ok and "10 changed and named" not in proof.headline()  # type: ignore[attr-defined]
    assert "3 kexec pages as the swap back left them, 4 changed and named, 0 lost" in proof.headline()  # type: ignore[attr-defined]


def test_a_window_page_not_swapped_back_is_a_problem(tmp_path: Path, symbols: SymbolMap) -> None:
    proof, pairs = resumed_run(tmp_path, symbols, swap_ok=False)
    assert not proof.holds  # type: ignore[attr-defined]
    assert any(f"page {pairs[1][0]:#x} of B's window" in p for p in proof.problems)  # type: ignore[attr-defined]


def test_a_page_changed_while_a_was_away_is_lost(tmp_path: Path, symbols: SymbolMap) -> None:
    proof, _ = resumed_run(tmp_path, symbols, lost=0x300000)
    assert proof.lost == [0x300000] and not proof.holds  # type: ignore[attr-defined]


def test_the_real_mode_area_changed_fails_only_where_a_uses_it(tmp_path: Path, symbols: SymbolMap) -> None:
    up, _ = resumed_run(tmp_path, symbols, low=0x98000, cpus=1)
    smp, _ = resumed_run(tmp_path, symbols, low=0x98000, cpus=2)
    assert up.holds and [p.owner.name for p in up.low] == ["reserved by A, unused", "A's real-mode area"]  # type: ignore[attr-defined]
    assert not smp.holds and "A starts its other CPUs through it" in smp.problems[0]  # type: ignore[attr-defined]


def test_no_kexec_image_leaves_the_leg_unproven(tmp_path: Path, symbols: SymbolMap) -> None:
    empty = core(tmp_path, "empty", {})
    proof = prove_resumed(empty, empty, ResumedMoment(empty, None, None, "syscore_resume"), [(0, A_END)],
                          layout(), symbols)
    assert proof.missing and not proof.holds and "kexec's page list" in proof.missing[0]


def test_7_2_s_e820_names_ram_system_ram() -> None:
    """7.x prints "System RAM" where 6.x prints "usable": both are A's RAM, not the firmware's."""
    reserved, why = reserved_low("7.2.13", "")
    lay = LowMemoryLayout(parse_e820(BOOT_LOG_7_2), None, 0x9FC00, reserved, why, 1)
    assert lay.owner(0x13000).name == "reserved by A, unused"


def test_a_push_on_the_peer_s_stack_is_named_where_the_swap_moved_it(tmp_path: Path, symbols: SymbolMap) -> None:
    """A's jump-back code pushes once on the stack the jump came with; when that stack lies
    in B's window, the swap back moves the word to the window page's kexec source page."""
    pairs = [(WINDOW[0] + i * PAGE, SOURCES + i * PAGE) for i in range(2)]
    kern = kernel_pages(pairs)
    dep = {**kern, pairs[0][0]: page(0x50), pairs[0][1]: page(0x40), pairs[1][0]: page(0x51), pairs[1][1]: page(0x41)}
    ret = {**dep, pairs[0][0]: page(0x60), pairs[1][0]: page(0x61)}
    pushed = page(0x60)[:-8] + b"\xdf\x00\x00\x02" + page(0x60)[-4:]
    res = {**ret, pairs[0][0]: page(0x40), pairs[0][1]: pushed, pairs[1][0]: page(0x41), pairs[1][1]: page(0x61)}
    moment = ResumedMoment(core(tmp_path, "res", res), None, None, "syscore_resume", pairs[0][0] + PAGE - 4)
    proof = prove_resumed(core(tmp_path, "dep", dep), core(tmp_path, "ret", ret), moment, [(0, A_END)], layout(),
                          symbols)
    assert proof.holds, proof.problems
    (write,) = proof.own_writes
    assert write[0] == pairs[0][1] and "the stack the jump back came with" in write[1] and "moved it" in write[1]


def test_a_s_ram_is_its_own_map_not_the_reserved_hole() -> None:
    """memmap=800M$64M (hw-i386-highmem-1g) takes 64-864 MiB from A: not A's RAM, left out
    of the last leg; the low 1 MiB stays in it, firmware's parts and all."""
    log = """[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] user-defined physical RAM map:
[    0.000000] user: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] user: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] user: [mem 0x00000000000f0000-0x00000000000fffff] reserved
[    0.000000] user: [mem 0x0000000000100000-0x0000000003ffffff] usable
[    0.000000] user: [mem 0x0000000004000000-0x0000000035ffffff] reserved
[    0.000000] user: [mem 0x0000000036000000-0x000000003e7fffff] usable
"""
    ram, not_ram = a_ram_map(log, [(0, 1000 * MiB)])
    assert ram == [(0, 64 * MiB), (0x36000000, 1000 * MiB)] and not_ram == [(64 * MiB, 0x36000000)]
    assert a_ram_map("", [(0, 120 * MiB)]) == ([(0, 120 * MiB)], [])  # no map printed: the limit
