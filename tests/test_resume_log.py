"""lab.evidence's reading of A's kernel log after a jump, on kernel logs recorded from
real runs (tests/data/kernel-logs: the `dmesg` of verify-A)."""

from __future__ import annotations

from pathlib import Path

from lab import SCENARIOS_DIR, evidence
from lab.console import clean_output
from lab.expectation import signature_matches, step_texts
from lab.results import RunResult, Step
from lab.scenario import load_scenario

LOGS = Path(__file__).parent / "data" / "kernel-logs"


def read(name: str) -> str:
    return (LOGS / name).read_text()


def test_a_clean_resume_has_its_restart_and_no_trouble() -> None:
    after = evidence.log_since_jump(read("i386-6.1-patched-ok.A.dmesg"), 1)
    assert after is not None and 0 < len(after) < 20
    assert evidence.restarted(after) == "[    4.940831] Restarting tasks ... done."
    assert evidence.kernel_trouble(after) == (False, [])


def test_a_warning_after_the_resume_is_found_with_its_trace() -> None:
    after = evidence.log_since_jump(read("i386-6.1-warning-after-resume.A.dmesg"), 1)
    assert after is not None and evidence.restarted(after)
    oops, trace = evidence.kernel_trouble(after)
    assert not oops
    assert "WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:85 lkdtm_WARNING" in trace[0]
    assert "end trace" in trace[-1] and any("Call Trace:" in line for line in trace)


def test_the_log_of_this_resume_only() -> None:
    # Cycle 2 must not pass on cycle 1's "Restarting tasks ... done.": the newest
    # mark of the jump counts, and what came before it does not.
    one = read("i386-6.1-patched-ok.A.dmesg")
    assert evidence.log_since_jump(one, 2) is None
    two = one + "[    9.000000] kjlab: jump-out 2\n[    9.100000] Freezing user space processes\n"
    after = evidence.log_since_jump(two, 2)
    assert after is not None and evidence.restarted(after) is None
    # The same mark written twice (a retried jump): the newest one counts.
    again = two + "[    9.200000] kjlab: jump-out 2\n[    9.300000] Restarting tasks ... done.\n"
    after = evidence.log_since_jump(again, 2)
    assert after is not None and evidence.restarted(after) == "[    9.300000] Restarting tasks ... done."


def test_done_on_a_line_of_its_own_and_the_7x_wording() -> None:
    nvme = ["[ 5.1] Restarting tasks ... ", "[ 5.2] nvme nvme0: 1/0/0 default/read/poll queues", "done."]
    assert evidence.restarted(nvme)
    assert evidence.restarted(["[ 5.1] Restarting tasks: Starting", "[ 5.2] Restarting tasks: Done"])
    assert evidence.restarted(["[ 5.1] Restarting tasks ... "]) is None


def test_each_kind_of_trouble_is_found() -> None:
    for line, oops in [
        ("[ 6.0] BUG: soft lockup - CPU#0 stuck for 22s! [sh:1]", False),
        ("[ 6.0] watchdog: BUG: soft lockup - CPU#1 stuck for 23s!", False),
        ("[ 6.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", False),
        ("[ 6.0] BUG: unable to handle page fault for address: 00001234", True),
        ("[ 6.0] Oops: 0002 [#1] PREEMPT", True),
        ("[ 6.0] WARNING: CPU: 1 PID: 0 at kernel/smp.c:912 smp_call_function_many_cond+0x1/0x2", False),
    ]:
        found_oops, trace = evidence.kernel_trouble(["[ 5.9] Restarting tasks ... done.", line])
        assert trace and trace[0] == line and found_oops is oops, line
    assert evidence.kernel_trouble(["[ 5.9] Restarting tasks ... done.", "[ 6.0] virtio_blk virtio0: [vda]"]) == (False, [])


def test_kexec_load_entry_from_kexec_d() -> None:
    out = "nr_segments = 8\nkexec_load: entry = 0x1ff48c6 flags = 0x2\nsegment[0].buf   = 0x1ee40c0\n"
    assert evidence.kexec_load_entry(out) == 0x1FF48C6
    assert evidence.kexec_load_entry("kexec_load failed: Invalid argument") is None


def test_the_cpu_count_survives_a_kernel_message_among_the_output() -> None:
    # Seen in a nightly (6.12, pc-scsi): the mouse driver printed right after the count.
    out = "1\n[    2.032089] input: ImExPS/2 Generic Explorer Mouse as /devices/platform/i8042/serio1/input/input2\n"
    assert evidence.cpu_count(out) == 1
    assert evidence.cpu_count("[ 1.0] x\n2\n") == 2
    assert evidence.cpu_count("grep: /proc/cpuinfo: No such file or directory\n") is None


# grep -m1 ^flags /proc/cpuinfo in kernel A, from the first full nightly (2026-12-01)
NOPAE_FLAGS = ("grep -m1 ^flags /proc/cpuinfo\r\nflags\t\t: fpu de pse tsc msr mce cx8 apic sep mtrr pge mca cmov "
               "pse36 mmx fxsr sse cpuid hypervisor\r\n")  # 5.10, pc-nopae (pentium3,-pae)
ATHLON_FLAGS = ("flags\t\t: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 mmx fxsr sse sse2 ht "
                "mmxext 3dnowext 3dnow cpuid hypervisor cmp_legacy 3dnowprefetch vmmcall\n")  # 6.1, pc-athlon-smp2


def test_the_cpu_flags_of_a_machine_are_checked_against_what_a_reports() -> None:
    from lab.machines import cpu_flags_mismatch, machines

    nopae, athlon = evidence.cpuinfo_flags(NOPAE_FLAGS), evidence.cpuinfo_flags(ATHLON_FLAGS)
    assert nopae is not None and "pae" not in nopae and "sse" in nopae
    assert athlon is not None and {"pae", "3dnow"} <= athlon and "monitor" not in athlon
    assert cpu_flags_mismatch(machines()["pc-nopae"].cpu_flags, nopae) == []
    assert cpu_flags_mismatch(machines()["pc-athlon-smp2"].cpu_flags, athlon) == []
    # the other way round: athlon's CPU is not a CPU without PAE
    assert cpu_flags_mismatch(machines()["pc-nopae"].cpu_flags, athlon) == [
        "pae: the machine's CPU must not have it, and A's /proc/cpuinfo lists it"]
    assert evidence.cpuinfo_flags("grep: /proc/cpuinfo: No such file or directory\n") is None


# A's WARNING after the jump back, on the console of an e2e run of checks/warning-after-resume
# whose 6.1 kernel the lab built from a staged copy of the source (../src from its objects)
STAGED_WARNING = "[    4.800774] WARNING: CPU: 0 PID: 1 at ../src/drivers/misc/lkdtm/bugs.c:85 lkdtm_WARNING+0x8/0xb"
AS_THE_KERNEL_PRINTS_IT = "[    4.800774] WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:85 lkdtm_WARNING+0x8/0xb"


def test_a_staged_builds_source_prefix_is_left_out_of_what_the_lab_records(tmp_path: Path) -> None:
    dmesg = f"[    4.700000] kjlab: jump-out 1\r\n{STAGED_WARNING}\r\n[    4.800774] ---[ end trace 0 ]---\r\n"
    # the output of verify-A's dmesg as the step records it, and the trouble read from it
    output = clean_output(dmesg)
    assert STAGED_WARNING not in output and AS_THE_KERNEL_PRINTS_IT in output
    after = evidence.log_since_jump(output, 1)
    assert after is not None
    assert evidence.kernel_trouble(after) == (False, [AS_THE_KERNEL_PRINTS_IT, "[    4.800774] ---[ end trace 0 ]---"])
    # the signature reads the step's console as the lab reads it; the console log keeps the bytes
    (tmp_path / "console-C-A.log").write_text(dmesg)
    result = RunResult("r", "check-warning-after-resume", "", "hibernate", 0.0,
                       steps=[Step("verify-A", "", "-", "C-A", 0.0, console_end=len(dmesg))])
    sc = load_scenario(SCENARIOS_DIR / "checks" / "warning-after-resume.toml")
    assert signature_matches(sc.expect.signature, step_texts(tmp_path, result, "verify-A"))
    assert not signature_matches(sc.expect.signature, [dmesg])
    assert STAGED_WARNING in (tmp_path / "console-C-A.log").read_text()


def test_only_the_staged_prefix_goes() -> None:
    for path in ("../../src/x.c", "/home/u/../src/x.c", "a../src/x.c", "../../../source/linux/arch/x86/mm/ioremap.c"):
        assert evidence.clean(f"WARNING: at {path}:1") == f"WARNING: at {path}:1"
    assert evidence.clean("kernel BUG at ../src/mm/slub.c:1 (../src/mm/slab.h)") == "kernel BUG at mm/slub.c:1 (mm/slab.h)"
