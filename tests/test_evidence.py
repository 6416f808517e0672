"""lab.verdict on the real console transcripts recorded by hand (tests/data/transcripts)."""

from pathlib import Path

import pytest

from lab import evidence as verdict

DATA = Path(__file__).parent / "data" / "transcripts"


def read(name: str) -> str:
    return (DATA / name).read_text(errors="replace")


def test_triple_fault_evidence_from_qemu_cpu_reset_log():
    ev = verdict.triple_fault_evidence(read("i386-6.12-unpatched-triple-fault.qemu-d-cpu_reset-int.tail.log"))
    assert ev[-1] == "Triple fault"
    assert any(line.startswith("GDT=") and "00000000 00000000" in line for line in ev)
    assert any("v=0d e=0068" in line for line in ev)  # the #GP on __KERNEL_DS


def test_no_triple_fault_in_a_clean_log():
    assert verdict.triple_fault_evidence("CPU Reset (CPU 0)\nEAX=00000000\n") == []


def test_makedumpfile_d31_resume_is_a_panic():
    lines = verdict.panic_lines(read("i386-6.1-makedumpfile-d31-panic.C-A.log"))
    assert any("Attempted to kill init" in line for line in lines)
    assert any("segfault at" in line for line in lines)


def test_patched_resume_has_no_panic_and_shows_restart():
    text = read("i386-6.1-patched-ok.C-A.log")
    assert verdict.panic_lines(text) == []
    assert verdict.restarted(verdict.clean(text).split("\n"))


@pytest.mark.parametrize(
    "name, needle",
    [
        ("i386-6.1-documented-cmdline-locate-hole.A.log", "locate_hole failed"),
        ("i386-6.1-no-memmap-no-crash-note.A-B.log", "Zero PT_NOTE entries found"),
        ("i386-6.1-no-memmap-no-crash-note.A-B.log", "vmcore not initialized"),
        ("i386-6.1-bios-area-window-wrapped-vmcore.A-B.log", "No space left on device"),
    ],
)
def test_kexec_tools_errors_are_recognised(name, needle):
    assert any(needle in line for line in verdict.kexec_error_lines(read(name)))


def test_jump_back_entry_from_b_cmdline():
    text = read("i386-6.1-patched-ok.A-B.log")
    assert verdict.jump_back_entry(text) == "0x020000d7"
    assert verdict.jump_back_entry("console=ttyS0 kjlab.role=C") is None


def test_parse_checks():
    out = "CHECK proof-file ok abc\r\n\x1b[0mCHECK counter bad pid 4 counted 5 -> 5\nnoise\n"
    assert verdict.parse_checks(out) == [("proof-file", True, "abc"), ("counter", False, "pid 4 counted 5 -> 5")]


def test_cpu_lists_as_sysfs_writes_them():
    assert verdict.parse_cpu_list("0-1,3\n") == [0, 1, 3]
    assert verdict.parse_cpu_list("cat /sys/devices/system/cpu/online\r\n0\r\n") == [0]
    assert verdict.parse_cpu_list("no list here\n") is None
    assert verdict.format_cpu_list([0, 2, 3, 4]) == "0,2-4"
    assert verdict.format_cpu_list([0]) == "0"
    for cpus in ([0], [0, 1], [0, 2, 3, 5, 6, 7]):
        assert verdict.parse_cpu_list(verdict.format_cpu_list(cpus)) == cpus
