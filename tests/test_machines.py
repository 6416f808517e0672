"""Machines as data beyond 896 MiB and 4 GiB: where QEMU puts their RAM, which need PAE and
which CPUs have it, the kernel each gets (one of its own for PAE, in scenarios and
matrices), and `kjlab list` showing them. Offline: nothing here boots a guest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.artifacts.kernel import CONFIGS_DIR, fragment_label, resolve_fragment
from lab.errors import ScenarioError, UserError
from lab.kconfig import parse_config
from lab.machines import (
    FOUR_GIB, GIB, MachineSpec, cpu_flags_mismatch, cpu_has_pae, kernel_variant, machine_fragments, machines, ram_ranges, ram_top,
    validate,
)
from lab.arch import Arch
from lab.matrix import load_matrix
from lab.runner import kernel_spec
from lab.scenario import load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


@pytest.mark.parametrize("machine, mib, want", [
    ("pc", 256, [(0, 256 * MiB)]),
    ("pc", 3072, [(0, 3 * GIB)]),  # all below 4 GiB: the pc splits only from 3.5 GiB on
    ("pc", 3583, [(0, 3583 * MiB)]),
    ("pc", 3584, [(0, 3 * GIB), (FOUR_GIB, FOUR_GIB + 512 * MiB)]),  # then at 3 GiB (gigabyte_align)
    ("pc", 6144, [(0, 3 * GIB), (FOUR_GIB, 7 * GIB)]),
    ("q35", 2815, [(0, 2815 * MiB)]),
    ("q35", 2816, [(0, 2 * GIB), (FOUR_GIB, FOUR_GIB + 768 * MiB)]),  # q35 splits at 2 GiB from 2.75 GiB on
])
def test_ram_ranges_follow_qemus_split(machine: str, mib: int, want: list[tuple[int, int]]) -> None:
    spec = MachineSpec("m", machine=machine, memory_mib=mib, pae=True)
    assert ram_ranges(spec) == want
    assert ram_top(spec) == want[-1][1]


def test_the_new_machines() -> None:
    m = machines()
    assert ram_top(m["pc-highmem-1g"]) == GIB and not m["pc-highmem-1g"].pae
    assert ram_ranges(m["pc-highmem-3g"]) == [(0, 3 * GIB)] and not m["pc-highmem-3g"].pae
    pae = m["pc-pae-6g"]
    assert pae.pae and ram_ranges(pae) == [(0, 3 * GIB), (FOUR_GIB, 7 * GIB)] and cpu_has_pae(pae.cpu)
    assert machine_fragments(pae) == ("pae",) and kernel_variant(pae) == ("pae",)
    assert not cpu_has_pae(m["pc-nopae"].cpu) and not m["pc-nopae"].pae
    assert m["pc-athlon-smp2"].cpu == "athlon" and machine_fragments(m["pc-athlon-smp2"]) == ("smp", "acpi")
    assert m["x86_64-pc-icelake"].arch is Arch.X86_64 and m["x86_64-pc-icelake"].cpu == "Icelake-Server"
    assert all(kernel_variant(s) == () for n, s in m.items() if n != "pc-pae-6g")


@pytest.mark.parametrize("cpu, has", [("qemu32", True), ("Penryn", True), ("pentium3,-pae", False),
                                      ("pentium", False), ("486", False), ("pentium,+pae", True),
                                      ("core2duo,-mwait", True)])
def test_cpu_has_pae(cpu: str, has: bool) -> None:
    assert cpu_has_pae(cpu) is has


@pytest.mark.parametrize("values, key, message", [
    ({"memory_mib": 6144}, "memory_mib", "puts 3072 MiB above 4 GiB (QEMU maps 3072 MiB below it), which an i386 "
                                         "kernel without PAE cannot use: set pae = true"),
    ({"memory_mib": 3584}, "memory_mib", "puts 512 MiB above 4 GiB"),
    ({"machine": "q35", "memory_mib": 3072}, "memory_mib", "puts 1024 MiB above 4 GiB (QEMU maps 2048 MiB"),
    ({"memory_mib": 9000, "pae": True}, "memory_mib", "from 128 to 8192"),
    ({"pae": True, "cpu": "pentium3,-pae"}, "pae", "has no PAE, and a PAE kernel stops at boot"),
    ({"pae": True, "cpu": "486"}, "pae", "has no PAE"),
    ({"pae": True, "arch": Arch.X86_64, "cpu": "qemu64"}, "pae", "an i386 setting"),
    ({"pae": "yes"}, "pae", "must be true or false"),
    ({"cpu_flags": ("PAE",)}, "cpu_flags", "lower-case letters"),
    ({"cpu_flags": ("pae; reboot",)}, "cpu_flags", "lower-case letters"),
    ({"cpu_flags": ["pae"]}, "cpu_flags", "must be a list"),
])
def test_machines_that_cannot_work_are_refused(values: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=rf"m.toml: {key}: .*{_re(message)}"):
        validate(MachineSpec("m", **values), "m.toml")  # type: ignore[arg-type]
    assert validate(MachineSpec("m", memory_mib=3072), "m.toml").memory_mib == 3072  # below 4 GiB: no PAE needed


def test_cpu_flags_name_what_a_cpu_must_and_must_not_have() -> None:
    flags = {"fpu", "vme", "pae", "nx", "sse2"}
    assert cpu_flags_mismatch(("pae", "-monitor"), flags) == []
    assert cpu_flags_mismatch(("-pae", "monitor"), flags) == [
        "pae: the machine's CPU must not have it, and A's /proc/cpuinfo lists it",
        "monitor: the machine's CPU must have it, and A's /proc/cpuinfo does not list it"]
    # the machines that exist for a CPU feature say which
    assert machines()["pc-nopae"].cpu_flags == ("-pae",)
    assert "-monitor" in machines()["pc-athlon-smp2"].cpu_flags
    assert {"pae", "nx"} <= set(machines()["pc-pae-6g"].cpu_flags)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_a_scenarios_ram_above_4_gib(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-pae-6g'\n[flow]\na_mem = ''\n"))
    assert sc.a_ram_end == 7 * GIB  # all of RAM ends past 6 GiB: the hole is below 4 GiB
    assert sc.a_ram_ranges == [(0, 3 * GIB), (FOUR_GIB, 7 * GIB)]
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-pae-6g'\n[flow]\na_mem = '4352M'\n"))
    assert sc.a_ram_end == 4352 * MiB and sc.a_ram_ranges == [(0, 3 * GIB), (FOUR_GIB, 4352 * MiB)]
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-highmem-1g'\n[flow]\na_mem = '1000M'\n"))
    assert sc.a_ram_ranges == [(0, 1000 * MiB)]
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-highmem-1g'\nc_memory_mib = 2304\n"))
    assert sc.c_memory_mib == 2304
    with pytest.raises(ScenarioError, match=r"machine.c_memory_mib: 6144 MiB on pc puts 3072 MiB above 4 GiB"):
        load_scenario(write(tmp_path, "[machine]\nname = 'pc-highmem-1g'\nc_memory_mib = 6144\n"))
    assert load_scenario(write(tmp_path, "[machine]\nname = 'pc-pae-6g'\nc_memory_mib = 8192\n")).c_memory_mib == 8192
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-virtio'\nmemory_mib = 6144\npae = true\n"))
    assert sc.machine.pae and "pae" in kernel_spec(sc).fragments
    with pytest.raises(ScenarioError, match=r"machine.memory_mib: 6144 MiB on pc puts"):
        load_scenario(write(tmp_path, "[machine]\nname = 'pc-virtio'\nmemory_mib = 6144\n"))
    with pytest.raises(ScenarioError, match=r"flow.highmem_sentinels: 3000 is more than A has: 2 x flow.sentinel_pages"):
        load_scenario(write(tmp_path, "[flow]\nhighmem_sentinels = 3000\n"))
    with pytest.raises(ScenarioError, match=r"flow.highmem_sentinels: the 'cycles' flow does not check it"):
        load_scenario(write(tmp_path, "[flow]\nname = 'cycles'\nhighmem_sentinels = 1\n"))


def test_a_pae_machine_gets_the_pae_kernel(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-pae-6g'\n"))
    assert kernel_spec(sc).fragments == ("kexec-jump-i386", "pae")
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'pc-nopae'\n"))
    assert kernel_spec(sc).fragments == ("kexec-jump-i386",)


def test_the_pae_fragment_has_a_form_per_series() -> None:
    """HIGHMEM64G is gone in sid's 7.2 (the generic form: PAE on HIGHMEM4G); 5.10, 6.1 and
    6.12 take the "64GB" model, the only one that uses RAM above 4 GiB. Checked by hand on
    the four unpacked Debian trees (tinyconfig + fragments + olddefconfig, then every
    requested symbol as asked): see scenarios-drafts/highmem/NOTES.md."""
    generic = parse_config(resolve_fragment("pae").read_text())
    assert generic == {"CONFIG_X86_PAE": "y"} and fragment_label(resolve_fragment("pae", "7.2")) == "pae.config"
    for series in ("5.10", "6.1", "6.12"):
        path = resolve_fragment("pae", series)
        assert fragment_label(path) == f"{series}/pae.config"
        assert parse_config(path.read_text()) == {"CONFIG_HIGHMEM4G": "n", "CONFIG_HIGHMEM64G": "y", "CONFIG_X86_PAE": "y"}
    assert resolve_fragment("acpi", "6.1") == CONFIGS_DIR / "acpi.config"  # no series form: the generic one
    with pytest.raises(UserError, match="unknown config fragment 'pae64'"):
        resolve_fragment("pae64", "6.1")


def matrix(tmp_path: Path, machines_line: str) -> Path:
    path = tmp_path / "m.matrix.toml"
    path.write_text(f"[matrix]\nname = 'm'\n{machines_line}\narch = ['i386', 'x86_64']\n"
                    "[[kernel]]\nname = '6.1'\nsource = 'debian:linux-source-6.1'\n")
    return path


def test_a_matrix_builds_the_pae_kernel_apart(tmp_path: Path) -> None:
    """The union of the machines' fragments would make every i386 kernel PAE, which the
    CPU without PAE does not boot: the PAE machine gets a kernel of its own."""
    m = load_matrix(matrix(tmp_path, "machines = ['pc-virtio', 'pc-nopae', 'pc-athlon-smp2', 'pc-pae-6g', "
                                     "'q35-ahci-smp2', 'x86_64-pc-virtio', 'x86_64-q35-smp2']"))
    frags = {c.machine: c.scenario["kernel"]["fragments"] for c in m.cells}
    plain = ["kexec-jump-i386", "smp", "acpi", "bus-ahci"]
    for name in ("pc-virtio", "pc-nopae", "pc-athlon-smp2", "q35-ahci-smp2"):
        assert frags[name] == plain, name
    assert frags["pc-pae-6g"] == plain + ["pae"]
    assert frags["x86_64-pc-virtio"] == frags["x86_64-q35-smp2"] == ["kexec-jump-x86_64", "smp", "acpi"]


def test_a_matrix_override_sets_kernel_cs_memory_only(tmp_path: Path) -> None:
    path = matrix(tmp_path, "machines = ['pc-highmem-1g', 'pc-virtio', 'x86_64-pc-virtio']")
    path.write_text(path.read_text() + "[[override]]\ncells = '*/i386/pc-highmem-1g/*/*'\n"
                    "machine = { c_memory_mib = 2304 }\nflow = { a_mem = '1000M' }\n")
    m = load_matrix(path)
    by = {c.machine: c.scenario for c in m.cells}
    assert by["pc-highmem-1g"]["machine"] == {"name": "pc-highmem-1g", "c_memory_mib": 2304}
    assert by["pc-virtio"]["machine"] == {"name": "pc-virtio"}
    bad = path.read_text().replace("c_memory_mib = 2304", "memory_mib = 2304")
    path.write_text(bad)
    with pytest.raises(ScenarioError, match=r"override\[0\].machine.memory_mib: unknown key; allowed: c_memory_mib"):
        load_matrix(path)
    path.write_text(bad.replace("memory_mib = 2304", "c_memory_mib = 6144"))
    with pytest.raises(ScenarioError, match=r"cell 6.1/i386/pc-highmem-1g/hibernate/none.*c_memory_mib: 6144 MiB"):
        load_matrix(path)


def test_a_matrix_override_gives_its_cells_kernel_a_fragments_and_window(tmp_path: Path) -> None:
    """x86_64 7.2: kernel A at 64 MiB (a-at-64m) above a 1-64 MiB window for B; the other
    cells keep the arch's A (a-outside-window) and the default window."""
    path = matrix(tmp_path, "machines = ['pc-virtio', 'x86_64-pc-virtio']")
    path.write_text(path.read_text() + "[[override]]\ncells = '*/x86_64/*/*/*'\na_fragments = ['a-at-64m']\n"
                    "flow = { a_mem = '184M', b_window = ['0x100000', '0x3ffffff'] }\n")
    m = load_matrix(path)
    by = {c.machine: scenario_from_dict(c.scenario, Path("cell")) for c in m.cells}
    assert by["x86_64-pc-virtio"].a_fragments == ("a-at-64m",)
    assert by["x86_64-pc-virtio"].flow.b_window == (0x100000, 0x3FFFFFF)
    assert by["pc-virtio"].a_fragments == () and by["pc-virtio"].flow.b_window == (0x100000, 0x1FFFFFF)
    path.write_text(path.read_text().replace("'a-at-64m'", "'no-such-fragment'"))
    with pytest.raises(ScenarioError, match="no-such-fragment"):
        load_matrix(path)


def test_kjlab_list_shows_both_arches_and_the_highmem_and_pae_machines() -> None:
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "list"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="80"), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    i386, x86_64 = lines.index("machines (i386)"), lines.index("machines (x86_64)")
    machine_lines = {line.split()[0]: (k, line) for k, line in enumerate(lines) if line.startswith("  ")
                     and line.split()[0] in machines()}
    for name, spec in machines().items():
        k, line = machine_lines[name]
        assert (x86_64 < k) == (spec.arch is Arch.X86_64) and (i386 < k), name
        assert f" {spec.arch} " in line and f" {spec.cpu} " in line
    for name in ("x86_64-pc-virtio", "x86_64-pc-epyc", "x86_64-q35-smp2", "x86_64-pc-icelake"):
        assert "pae=" not in machine_lines[name][1]
    assert " 1024 MiB " in machine_lines["pc-highmem-1g"][1] and "pae=False" in machine_lines["pc-highmem-1g"][1]
    assert " 3072 MiB " in machine_lines["pc-highmem-3g"][1]
    pae = machine_lines["pc-pae-6g"][1]
    assert "6144 MiB (3072 + 3072 above 4 GiB)" in pae and "pae=True" in pae and "(fragments: pae)" in pae
    assert " pentium3,-pae " in machine_lines["pc-nopae"][1]


DRAFTS = ROOT / "scenarios-drafts"


@pytest.mark.parametrize("path", sorted(p for p in DRAFTS.rglob("*.toml") if not p.name.endswith(".matrix.toml")),
                         ids=lambda p: p.name)
def test_the_draft_scenarios_load_and_say_they_are_drafts(path: Path) -> None:
    """Drafts are written before any run; they live outside scenarios/ (which the bug
    library runs whole) and say so in their name, description and first line."""
    from lab import SCENARIOS_DIR

    assert not path.is_relative_to(SCENARIOS_DIR)
    sc = load_scenario(path)
    assert sc.name.startswith("draft-") and "not yet run" in sc.description
    assert path.read_text().startswith("# DRAFT, NOT YET RUN")
    assert (sc.expect.verdict == "PASS") == (not sc.expect.signature)


def test_the_nightly_covers_both_arches_four_kernels_and_the_new_machines() -> None:
    m = load_matrix(ROOT / "scenarios" / "matrices" / "nightly.matrix.toml")
    assert {c.arch for c in m.cells} == {"i386", "x86_64"}
    assert {c.kernel for c in m.cells} == {"5.10", "6.1", "6.12", "7.2"}
    assert {c.kernel for c in m.cells if c.arch == "x86_64"} == {"6.1", "6.12", "7.2"}  # 5.10: i386 only
    names = {c.machine for c in m.cells}
    assert len(names) >= 8 and {"pc-highmem-1g", "pc-highmem-3g", "pc-athlon-smp2", "pc-nopae",
                                "x86_64-pc-icelake", "x86_64-pc-epyc"} <= names
    by = {c.id: c.scenario for c in m.cells}
    assert by["5.10/i386/pc-highmem-3g/hibernate/fixes"]["flow"]["highmem_sentinels"] == 1024
    assert "pae" not in by["6.1/i386/pc-nopae/hibernate/fixes"]["kernel"]["fragments"]
    assert by["6.1/x86_64/x86_64-pc-virtio/hibernate/fixes"]["expect"]["verdict"] == "TRIPLE_FAULT"
    assert by["6.12/x86_64/x86_64-pc-virtio/hibernate/fixes"]["expect"]["verdict"] == "PASS"
    assert by["6.1/x86_64/x86_64-pc-virtio/swsusp/fixes"]["expect"]["verdict"] == "PASS"