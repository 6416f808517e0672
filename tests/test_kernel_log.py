"""lab.memory.kernel_log on a real recording: kernel A of 6.1 i386 after a silent panic
(scenarios/checks/silent-panic-after-resume.toml). The recording is the small ELF the
lab wrote from the 256 MiB dump of the silent guest - the log's pages, the VMCOREINFO
note and its pointer at their physical and virtual addresses - and the log that the
host's vmcore-dmesg (kexec-tools) read from it then. The tests run vmcore-dmesg for real."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest

from lab.arch import Arch
from lab.errors import KernelLogUnreadable
from lab.flows.base import FROM_MEMORY, FlowStop, judge_with_memory_log, oops_trace
from lab.memory.image import PhysImage
from lab.memory.kernel_log import MemoryLog, find_vmcoreinfo, printk_ranges, read_kernel_log, read_virt
from lab.symbols import SymbolMap
from lab.verdict import Verdict

DATA = Path(__file__).parent / "data" / "memory-logs"
RECORDING = "i386-6.1-silent-panic.A"


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    out = tmp_path / f"{RECORDING}.pages.elf"
    with gzip.open(DATA / f"{RECORDING}.pages.elf.gz") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


SYSTEM_MAP = DATA / f"{RECORDING}.System.map"
RECORDED_LOG = (DATA / f"{RECORDING}.dmesg").read_text()


def test_the_log_read_from_memory_is_the_one_recorded(pages: Path, tmp_path: Path) -> None:
    mlog = read_kernel_log(pages, [SYSTEM_MAP], tmp_path / "again.elf")
    assert mlog.text == RECORDED_LOG
    assert (mlog.role, mlog.release, mlog.kernel) == ("A", "6.1.192", "kernel A")
    assert mlog.lines[-1].endswith("---[ end Kernel panic - not syncing: dumptest ]---")
    # What it wrote is again such a file: the same pages, the same note, byte for byte.
    assert (tmp_path / "again.elf").read_bytes() == pages.read_bytes()


def test_the_note_is_found_through_the_system_map(pages: Path) -> None:
    with PhysImage.open(pages) as img:
        info = find_vmcoreinfo(img, SymbolMap.load(SYSTEM_MAP))
        assert info.fields["OSRELEASE"] == "6.1.192" and info.number("SYMBOL(prb)") == 0xC04AA17C
        assert info.pointer == 0xC05909CC and info.note[12:22] == b"VMCOREINFO"
        # the ring buffer: prb, its descriptors and infos in .data, the text in .bss
        ranges = printk_ranges(img, info)
        assert ranges[0][0] == 0xC04AA000 and sum(e - s for s, e in ranges) > 128 << 10


def test_a_map_of_another_kernel_is_refused(pages: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.System.map"
    other.write_text(SYSTEM_MAP.read_text().replace("c04aa17c d prb", "c04ab17c d prb"))
    with PhysImage.open(pages) as img, pytest.raises(KernelLogUnreadable, match="not of this System.map's kernel"):
        find_vmcoreinfo(img, SymbolMap.load(other))
    # read_kernel_log tries the maps in turn: the wrong one is named, the right one read
    assert read_kernel_log(pages, [other, SYSTEM_MAP], tmp_path / "log.elf").role == "A"
    with pytest.raises(KernelLogUnreadable, match="other.System.map: the VMCOREINFO in memory is not"):
        read_kernel_log(pages, [other], tmp_path / "log.elf")


def test_memory_the_dump_lacks_is_an_error_not_zeros(pages: Path, tmp_path: Path) -> None:
    no_note = tmp_path / "no-note.System.map"
    no_note.write_text("c04aa17c d prb\n")
    with PhysImage.open(pages) as img:
        with pytest.raises(KernelLogUnreadable, match="has no vmcoreinfo_note"):
            find_vmcoreinfo(img, SymbolMap.load(no_note))
        with pytest.raises(KernelLogUnreadable, match="lacks physical 0x1000000-0x1001000"):
            read_virt(img, 0xC1000000, 4)
        with pytest.raises(KernelLogUnreadable, match="not in the i386 direct map"):
            read_virt(img, 0x1000, 4)


def test_a_cleared_pointer_says_so(pages: Path, tmp_path: Path) -> None:
    """A kernel whose vmcoreinfo_note is NULL (not set up yet, or another kernel's memory
    at that place: A's departure snapshot holds B's fresh image there)."""
    data = bytearray(pages.read_bytes())
    with PhysImage.open(pages) as img:
        seg = next(s for s in img.segments if s.paddr <= 0x5909CC < s.end)
    at = seg.offset + 0x5909CC - seg.paddr
    data[at:at + 4] = struct.pack("<I", 0)
    cleared = tmp_path / "cleared.elf"
    cleared.write_bytes(bytes(data))
    with pytest.raises(KernelLogUnreadable, match="vmcoreinfo_note is NULL"):
        read_kernel_log(cleared, [SYSTEM_MAP], tmp_path / "log.elf")


def memory_log(text: str, role: str = "A") -> MemoryLog:
    return MemoryLog(text, role, "6.1.192", Path("snapshot-silent-verify-A.elf"), Path("x.elf"), SYSTEM_MAP)


HANG = FlowStop(Verdict.HANG, "no end of `echo PANIC` within 10 s", ["-- last console lines --", "kj-A# "])


def test_a_panic_in_the_log_read_from_memory_is_the_verdict() -> None:
    stop = judge_with_memory_log(HANG, memory_log(RECORDED_LOG), jumps_out=1)
    assert stop.verdict is Verdict.PANIC
    assert stop.reason.startswith("kernel A died with nothing on the console: [    6.055406] Kernel panic - not syncing: dumptest")
    assert stop.evidence[0] == f"-- kernel A's log, {FROM_MEMORY} (snapshot-silent-verify-A.elf) --"
    assert "lkdtm_PANIC" in "\n".join(stop.evidence)
    end = stop.evidence.index("[    6.055406] ---[ end Kernel panic - not syncing: dumptest ]---")
    assert stop.evidence[end + 1:] == ["-- the console --", *HANG.evidence]


def test_a_panic_before_this_jump_is_not_this_resumes() -> None:
    """For A, only the log after its latest jump out counts (its jump mark); a log
    without trouble leaves the HANG and adds its last lines."""
    quiet = RECORDED_LOG.split("[    6.0554")[0]  # up to the panic
    stop = judge_with_memory_log(HANG, memory_log(quiet), jumps_out=1)
    assert stop.verdict is Verdict.HANG and stop.reason == HANG.reason
    assert stop.evidence[:2] == HANG.evidence
    assert stop.evidence[2] == f"-- last 20 lines of kernel A's log, {FROM_MEMORY} (snapshot-silent-verify-A.elf) --"
    assert len(stop.evidence) == 23
    old_panic = "[    0.5] Kernel panic - not syncing: old\n[    0.6] kjlab: jump-out 2\n[    0.7] fine\n"
    assert judge_with_memory_log(HANG, memory_log(old_panic), jumps_out=2).verdict is Verdict.HANG
    assert judge_with_memory_log(HANG, memory_log(old_panic, role="B"), jumps_out=2).verdict is Verdict.PANIC


def test_oops_trace_ends_with_its_trace() -> None:
    lines = ["a", "BUG: unable to handle page fault for address: 0", "x", "---[ end trace 0 ]---", "after"]
    assert oops_trace(lines) == lines[1:4]
    assert oops_trace(["WARNING: CPU: 0 PID: 1 at x"]) == []


# -- x86_64 ---------------------------------------------------------------------------------

X86_64_RECORDING = "x86_64-6.12-B-booted.B"  # kernel B of x86_64-hibernate.toml, from its B-booted snapshot


def test_an_x86_64_kernel_log_is_read_through_the_kernel_mapping_at_its_phys_base(tmp_path: Path) -> None:
    """Kernel B of 6.12 x86_64 runs where kexec put it (20 MiB), not where it was linked
    (2 MiB): its variables are found at phys_base 0x1200000, its allocations in the direct
    map; the pages are written as an ELF64 core that vmcore-dmesg reads."""
    pages = tmp_path / "pages.elf"
    with gzip.open(DATA / f"{X86_64_RECORDING}.pages.elf.gz") as src, open(pages, "wb") as dst:
        shutil.copyfileobj(src, dst)
    system_map = DATA / f"{X86_64_RECORDING}.System.map"
    mlog = read_kernel_log(pages, [system_map], tmp_path / "again.elf", Arch.X86_64)
    assert mlog.text == (DATA / f"{X86_64_RECORDING}.dmesg").read_text()
    assert (mlog.role, mlog.release) == ("B", "6.12.117")
    assert (tmp_path / "again.elf").read_bytes() == pages.read_bytes()
    with PhysImage.open(pages) as img:
        assert (img.elf_class, img.machine) == (64, "EM_X86_64")
        info = find_vmcoreinfo(img, SymbolMap.load(system_map, arch=Arch.X86_64))
        assert info.space is not None and info.space.phys_base == 0x1200000
        assert info.fields["NUMBER(phys_base)"] == "18874368"
        with pytest.raises(KernelLogUnreadable, match="not in the x86_64 direct map or the kernel image's mapping"):
            read_virt(img, 0x1000, 4, Arch.X86_64)
    # read as i386, the same map finds nothing
    with pytest.raises(KernelLogUnreadable):
        read_kernel_log(pages, [system_map], tmp_path / "i386.elf")
