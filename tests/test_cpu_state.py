"""Where a hung guest's CPUs are: QEMU's `info registers -a` (recorded from QEMU 7.2) and the
purgatory symbols of a real `kexec -d` load on the console (5.10.262, q35 SMP run)."""

from pathlib import Path

from lab.cpu_state import cpu_lines, parse_info_registers, purgatory_symbols
from lab.symbols import SymbolMap, symbolize

DATA = Path(__file__).parent / "data" / "cpu-state"


def test_info_registers_of_two_cpus():
    cpus = parse_info_registers((DATA / "info-registers-i386-reset-smp2.txt").read_text())
    assert [(c.index, c.ip_name, c.ip, c.cs, c.halted, c.paging) for c in cpus] == [
        (0, "EIP", 0xfff0, 0xf000, False, False), (1, "EIP", 0xfff0, 0xf000, True, False)]
    assert parse_info_registers("") == [] and parse_info_registers("CPU#0\nEAX=0\n") == []


def hung_5_10_registers() -> str:
    """The two CPUs of the 5.10 hang at jump-to-B (values read from that run's snapshot: CPU 0
    in purgatory with paging off, CPU 1 still in A's mwait loop), in QEMU's format."""
    text = (DATA / "info-registers-i386-reset-smp2.txt").read_text()
    cpu0, cpu1 = text.split("\nCPU#1\n")
    cpu0 = (cpu0.replace("EIP=0000fff0", "EIP=01ff411d").replace("ESP=00000000", "ESP=01ffbff0")
            .replace("CS =f000", "CS =0010").replace("CR0=60000010", "CR0=00000011"))
    cpu1 = (cpu1.replace("EIP=0000fff0", "EIP=c0224736").replace("ESP=00000000", "ESP=c0141f80")
            .replace("CS =f000", "CS =0060").replace("CR0=60000010", "CR0=80050033")
            .replace("CR3=00000000", "CR3=01a2c000").replace("HLT=1", "HLT=0"))
    return cpu0 + "\nCPU#1\n" + cpu1


def test_a_cpu_in_purgatorys_digest_loop_and_one_in_the_kernel_are_named(tmp_path):
    purgatory = purgatory_symbols((DATA / "console-load-B-5.10-smp.txt").read_text())
    assert purgatory is not None and purgatory.base == 0x1ff4000
    assert purgatory.lookup(0x1ff411d) == "purgatory+0x2a"  # the `jmp .` after verify_sha256_digest()
    assert purgatory.lookup(0x1ff40f3) == "purgatory"
    assert purgatory.lookup(0x0c000000) is None

    lines = cpu_lines(parse_info_registers(hung_5_10_registers()), purgatory)
    assert lines[0] == "CPU#0 EIP=01ff411d (kexec purgatory: purgatory+0x2a) CS=0010 ESP=01ffbff0 CR3=00000000"
    # the kernel's own addresses are named by its System.map, as all evidence is
    smap = tmp_path / "System.map"
    smap.write_text("c0224721 T play_dead_common\nc022472d T cond_wakeup_cpu0\nc0224746 T hlt_play_dead\n")
    assert symbolize(lines, SymbolMap.load(smap))[1] == \
        "CPU#1 EIP=c0224736 <cond_wakeup_cpu0+0x9> CS=0060 ESP=c0141f80 CR3=01a2c000"


def test_the_latest_load_s_purgatory_counts():
    console = (DATA / "console-load-B-5.10-smp.txt").read_text()
    moved = console.replace("Loaded purgatory at addr 0x1ff4000", "Loaded purgatory at addr 0x1ff4000\n"
                            "sym: purgatory info: 12 other: 00 shndx: 1 value: f3 size: 32\n"
                            "sym: purgatory value: 3ff40f3 addr: 3ff48f2\nLoaded purgatory at addr 0x3ff4000")
    purgatory = purgatory_symbols(moved)
    assert purgatory is not None and purgatory.base == 0x3ff4000
    assert purgatory.lookup(0x3ff411d) == "purgatory+0x2a" and purgatory.lookup(0x1ff411d) is None
    assert purgatory_symbols("no kexec here") is None
