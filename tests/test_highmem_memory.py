"""The host's proof of memory on machines with high memory and RAM above 4 GiB (i386 PAE):
ELF64 cores of an i386 guest (QEMU writes ELF64 once a RAM block ends above 4 GiB, and
kexec-tools gives B an ELF64 vmcore once A has RAM there), PT_LOADs above 4 GiB, the PCI
hole that is nobody's memory, A's HighMem zone from its boot log and the sentinel pages in
it. Synthetic cores only (sparse files): no guest."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lab.evidence import highmem_zone
from lab.flows.base import FlowStop
from lab.flows.hibernate import HibernateFlow
from lab.memory.checks import SentinelPlan, check_image
from lab.memory.image import PhysImage
from lab.memory.roundtrip import LOW_MEMORY, prove_round_trip
from lab.memory.sentinels import REGION_ANON, REGION_TMPFS, scan_sentinels, sentinel_page
from lab.verdict import Verdict
from tests.test_snapshots import Seg, page_of, write_core

MiB, GiB = 1 << 20, 1 << 30
HIGH = 4 * GiB  # the first byte above the hole
WINDOW = (0x100000, 0x1FFFFFF)
A_RAM = [(0, 40 * MiB), (HIGH, HIGH + 8 * MiB)]  # 40 MiB at 0, 8 MiB at 4 GiB: a hole between
TOKEN, SEED = 0x0123456789ABCDEF, 0x5EED
RUNS = Path(__file__).resolve().parent / "data" / "runs"


def a_pages(extra: dict[int, bytes] | None = None) -> dict[int, bytes]:
    data = {32 * MiB + k * 4096: page_of(k % 251 + 1) for k in range(0, 2048, 7)}
    data.update({HIGH + k * 4096: page_of(k % 13 + 2) for k in range(0, 2048, 5)})
    data.update({HIGH + 6 * MiB + i * 4096: sentinel_page(TOKEN, i, REGION_TMPFS, SEED) for i in range(4)})
    data.update({36 * MiB + i * 4096: sentinel_page(TOKEN, i, REGION_ANON, SEED) for i in range(4)})
    data.update(extra or {})
    return data


def snapshot(path: Path, extra: dict[int, bytes] | None = None) -> Path:
    """QEMU's dump of A: ELF64 with e_machine EM_386, one PT_LOAD per RAM block."""
    return write_core(path, [Seg(0, 40 * MiB), Seg(HIGH, 8 * MiB)], {0x2000: page_of(9), **a_pages(extra)})


def image(path: Path, extra: dict[int, bytes] | None = None) -> Path:
    """B's copy of /proc/vmcore: ELF64 (A has RAM above 4 GiB), A's RAM outside the window."""
    return write_core(path, [Seg(32 * MiB, 8 * MiB), Seg(HIGH, 8 * MiB)], a_pages(extra))


def test_an_i386_core_with_ram_above_4_gib_reads_by_physical_address(tmp_path: Path) -> None:
    with PhysImage.open(snapshot(tmp_path / "dep.elf")) as img:
        assert (img.elf_class, img.machine) == (64, "EM_386")
        assert img.present_ranges() == A_RAM
        assert bytes(img.pages(HIGH + 5 * 4096, HIGH + 6 * 4096).reshape(-1)) == page_of(5 % 13 + 2)
        assert scan_sentinels(img, TOKEN).within(HIGH, HIGH + 8 * MiB) == {"tmpfs": 4, "anon": 0}


def test_the_round_trip_proves_the_pages_above_4_gib_and_leaves_the_hole_alone(tmp_path: Path) -> None:
    dep, b, ret = (snapshot(tmp_path / f"{n}.elf") for n in ("dep", "b", "ret"))
    img = image(tmp_path / "img.elf")
    proof = prove_round_trip(dep, b, img, ret, WINDOW, A_RAM)
    assert proof.proven and proof.pages_in_domain == 2048 + 2048
    assert proof.domain == [(32 * MiB, 40 * MiB), (HIGH, HIGH + 8 * MiB)]
    # the low MiB and the window only: the 4 GiB - 40 MiB between A's RAM ranges is no one's
    assert [r for r, _ in proof.left_out] == [LOW_MEMORY, (0x100000, 0x2000000)]


def test_a_changed_page_above_4_gib_is_named_with_its_whole_address(tmp_path: Path) -> None:
    addr = HIGH + 7 * MiB
    changed = bytearray(page_of(0))
    changed[0x10] = 0xAA
    dep, b = snapshot(tmp_path / "dep.elf"), snapshot(tmp_path / "b.elf")
    img = image(tmp_path / "img.elf")
    ret = snapshot(tmp_path / "ret.elf", {addr: bytes(changed)})
    proof = prove_round_trip(dep, b, img, ret, WINDOW, A_RAM)
    (leg,) = proof.failed_legs
    assert leg.name == "on the disk = return" and leg.differing == ((addr, addr + 4096),)
    assert leg.examples[0].line().startswith("page 0x100700000: first difference at +0x010: ")


def test_the_image_check_counts_the_sentinel_pages_in_highmem(tmp_path: Path) -> None:
    dep, b = snapshot(tmp_path / "dep.elf"), snapshot(tmp_path / "b.elf")
    img = image(tmp_path / "img.elf")
    plan = SentinelPlan(TOKEN, SEED, pages=4)
    zone = (38 * MiB, HIGH + 8 * MiB)  # HighMem as a PAE kernel reports it: from lowmem's end past 4 GiB
    finding = check_image(img, b, dep, plan, WINDOW, zone)
    assert finding.problems == []
    assert finding.record.sentinels_in_highmem == {"zone": "0x2600000-0x100800000", "tmpfs": 4, "anon": 0, "of": 8}
    assert check_image(img, b, dep, plan, WINDOW).record.sentinels_in_highmem is None


def test_highmem_zone_from_a_boot_log() -> None:
    log = ("[    0.000000] Zone ranges:\n"
           "[    0.000000]   Normal   [mem 0x0000000000001000-0x0000000037ffdfff]\n"
           "[    0.000000]   HighMem  [mem 0x0000000037ffe000-0x000000010fffffff]\n")
    assert highmem_zone(log) == (0x37FFE000, 0x110000000)
    assert highmem_zone("\r\n[    0.000000]   HighMem  [mem 0x0000000037ffe000-0x000000003fffffff]\r\n") == (
        0x37FFE000, 0x40000000)
    # a console line seen on a busy host (pc-highmem-1g, 6.1, 2026-12-01): the timestamp's "]" lost
    assert highmem_zone("[    0.000000]   Normal   [mem 0x0000000000001000-0x00000000373fdfff]\n"
                        "[    0.000000  HighMem  [mem 0x00000000373fe000-0x000000003e7fffff]\n") == (0x373FE000, 0x3E800000)
    # A with mem=120M: every byte lowmem; the recorded run's log says so
    recorded = (RUNS / "i386-hibernate-pass" / "console-A-B.log").read_text(errors="replace")
    assert "HighMem  empty" in recorded and highmem_zone(recorded) is None


def flow_asking(want: int) -> SimpleNamespace:
    notes: list[tuple[str, str]] = []
    return SimpleNamespace(sc=SimpleNamespace(flow=SimpleNamespace(highmem_sentinels=want)),
                           rec=SimpleNamespace(note=lambda title, text="", *a: notes.append((title, text)), notes=notes))


def test_a_scenario_can_insist_on_sentinel_pages_in_highmem() -> None:
    counts = {"zone": "0x37ffe000-0x40000000", "tmpfs": 700, "anon": 0, "of": 2048}
    flow = flow_asking(0)
    assert HibernateFlow.highmem_short(flow, counts) is None  # type: ignore[arg-type]
    assert flow.rec.notes == [("sentinel pages in A's HighMem zone at the jump",
                               "0x37ffe000-0x40000000: tmpfs 700, anon 0 of 2048")]
    assert HibernateFlow.highmem_short(flow_asking(700), counts) is None  # type: ignore[arg-type]
    stop = HibernateFlow.highmem_short(flow_asking(1024), counts)  # type: ignore[arg-type]
    assert isinstance(stop, FlowStop) and stop.verdict is Verdict.CHECK_FAILED
    assert stop.reason == ("700 of A's sentinel pages lay in A's HighMem zone 0x37ffe000-0x40000000 at the jump, "
                           "flow.highmem_sentinels asks for 1024: this run does not test high memory")
    stop = HibernateFlow.highmem_short(flow_asking(1), None)  # type: ignore[arg-type]
    assert stop is not None and "A's boot log reported none" in stop.reason
