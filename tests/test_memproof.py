"""lab.memory.roundtrip on ELF cores written here: the chain departure = in B = on the disk =
return over the proof domain, and what a differing page looks like."""

from __future__ import annotations

from pathlib import Path

from lab.memory.roundtrip import LOW_MEMORY, prove_round_trip
from lab.symbols import SymbolMap, symbolize_line
from tests.test_snapshots import Seg, page_of, write_core

MiB = 1 << 20
WINDOW = (0x100000, 0x1FFFFFF)
A_END = 40 * MiB
A_RAM = [(0, A_END)]


def memory(path: Path, extra: dict[int, bytes] | None = None) -> Path:
    """A 40 MiB guest: A's pages 32-40 MiB hold a pattern, the low MiB and the window other stuff."""
    data = {32 * MiB + k * 4096: page_of(k % 251 + 1) for k in range(0, 2048, 7)}
    data[0x2000] = page_of(9)  # low memory: B and C use it
    data[0x300000] = page_of(8)  # B's window
    data.update(extra or {})
    return write_core(path, [Seg(0, A_END)], data, elf_class=64)


def image(path: Path, extra: dict[int, bytes] | None = None) -> Path:
    """What B saves: A's RAM outside the window (one PT_LOAD, as on a real run)."""
    data = {32 * MiB + k * 4096: page_of(k % 251 + 1) for k in range(0, 2048, 7)}
    data.update(extra or {})
    return write_core(path, [Seg(32 * MiB, 8 * MiB)], data, elf_class=32)


def test_every_page_proven_when_all_four_agree(tmp_path: Path) -> None:
    dep, b = memory(tmp_path / "dep.elf"), memory(tmp_path / "b.elf", {0x300000: page_of(1)})
    img, ret = image(tmp_path / "img.elf"), memory(tmp_path / "ret.elf", {0x2000: page_of(3)})
    proof = prove_round_trip(dep, b, img, ret, WINDOW, A_RAM)
    assert proof.proven and proof.complete
    assert proof.pages_in_domain == 2048
    assert [leg.pages_compared for leg in proof.legs] == [2048, 2048, 2048]
    assert [r for r, _ in proof.left_out] == [LOW_MEMORY, (0x100000, 0x2000000)]


def test_one_changed_byte_breaks_its_leg_and_is_named(tmp_path: Path) -> None:
    addr = 32 * MiB + 5 * 4096
    changed = bytearray(page_of(0))
    changed[0x123] = 0x01
    dep, b = memory(tmp_path / "dep.elf"), memory(tmp_path / "b.elf")
    img = image(tmp_path / "img.elf", {addr: bytes(changed)})
    ret = memory(tmp_path / "ret.elf", {addr: bytes(changed)})
    proof = prove_round_trip(dep, b, img, ret, WINDOW, A_RAM)
    assert not proof.proven
    assert [leg.name for leg in proof.failed_legs] == ["in B = on the disk"]
    (leg,) = proof.failed_legs
    assert leg.differing == ((addr, addr + 4096),) and leg.pages_differing == 1
    (page,) = leg.examples
    assert page.address == addr and page.offset == 0x123
    assert page.line().startswith(f"page {addr:#010x}: first difference at +0x123: ")
    assert "1 of 2048 pages differ" in leg.summary()


def test_a_moment_never_reached_is_not_a_proof(tmp_path: Path) -> None:
    b, img = memory(tmp_path / "b.elf"), image(tmp_path / "img.elf")
    proof = prove_round_trip(None, b, img, None, WINDOW, A_RAM)
    assert not proof.complete and not proof.proven
    assert len(proof.missing) == 2 and [leg.name for leg in proof.legs] == ["in B = on the disk"]


def test_symbols_name_functions_and_physical_pages(tmp_path: Path) -> None:
    smap = tmp_path / "System.map"
    smap.write_text("00200000 A phys_startup_32\nc0200000 T _text\nc03997f7 T restore_processor_state\n"
                    "c03998a0 T do_suspend_lowlevel\nc0500000 D saved_context\n")
    symbols = SymbolMap.load(smap)
    assert symbols.lookup(0xC0399800) == "restore_processor_state+0x9"
    assert symbols.lookup_physical(0x500010) == "saved_context+0x10"
    assert symbols.lookup(0x1000) is None
    line = "0: v=0d e=0068 i=0 cpl=0 IP=0060:c0399800 pc=c0399800 SP=0068:c1000000"
    assert symbolize_line(line, symbols) == ("0: v=0d e=0068 i=0 cpl=0 IP=0060:c0399800 <restore_processor_state+0x9> "
                                             "pc=c0399800 <restore_processor_state+0x9> SP=0068:c1000000")


def test_pages_missing_on_one_side_are_not_proven(tmp_path: Path) -> None:
    """A departure snapshot that lacks part of A's RAM (a truncated file) proves nothing
    there: its leg does not hold, though no compared page differs."""
    same = {32 * MiB + k * 4096: page_of(k % 251 + 1) for k in range(0, 1024, 7)}
    dep = write_core(tmp_path / "dep.elf", [Seg(0, 36 * MiB)], same, elf_class=64)
    b, img, ret = memory(tmp_path / "b.elf"), image(tmp_path / "img.elf"), memory(tmp_path / "ret.elf")
    proof = prove_round_trip(dep, b, img, ret, WINDOW, A_RAM)
    (leg,) = proof.failed_legs
    assert leg.name == "departure = in B" and not leg.differing
    assert leg.pages_compared == 1024 and leg.pages_in_domain == 2048
    assert "1024 of 2048 pages present on both sides" in leg.summary()


def test_pages_makedumpfile_left_out_are_listed_as_such(tmp_path: Path) -> None:
    dep, b, ret = memory(tmp_path / "dep.elf"), memory(tmp_path / "b.elf"), memory(tmp_path / "ret.elf")
    img = write_core(tmp_path / "img.elf", [Seg(32 * MiB, 8 * MiB, filesz=4 * MiB)],
                     {32 * MiB + k * 4096: page_of(k % 251 + 1) for k in range(0, 1024, 7)}, elf_class=32)
    proof = prove_round_trip(dep, b, img, ret, WINDOW, A_RAM)
    assert proof.pages_in_domain == 1024
    reasons = {r: why for r, why in proof.left_out}
    assert "makedumpfile excluded it" in reasons[(36 * MiB, 40 * MiB)]
