"""Scenario files: the shipped ones load; bad ones fail naming the file, the key and the choices."""

from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.arch import Arch
from lab.errors import ScenarioError
from lab.scenario import load_scenario


@pytest.mark.parametrize("path", sorted(p for p in SCENARIOS_DIR.rglob("*.toml") if not p.name.endswith(".matrix.toml")),
                         ids=lambda p: p.name)
def test_shipped_scenarios_load(path):
    sc = load_scenario(path)
    assert sc.name and sc.kernel.arch is sc.machine.arch
    assert sc.kernel.arch == ("x86_64" if path.name.startswith("x86_64-") else "i386")


def test_the_arch_follows_the_machine_and_must_agree(tmp_path):
    sc = load_scenario(write(tmp_path, "[machine]\nname = 'x86_64-pc-virtio'\n"))
    assert sc.kernel.arch is Arch.X86_64 and sc.kernel.fragments == ("kexec-jump-x86_64",)
    assert load_scenario(write(tmp_path, "[scenario]\nname = 'x'\n")).kernel.fragments == ("kexec-jump-i386",)
    with pytest.raises(ScenarioError, match=r"kernel.arch: x86_64 does not run on machine 'pc-virtio', which is i386"):
        load_scenario(write(tmp_path, "[kernel]\narch = 'x86_64'\n"))
    with pytest.raises(ScenarioError, match=r"kernel.arch: 'arm64' is not allowed; options are i386, x86_64"):
        load_scenario(write(tmp_path, "[kernel]\narch = 'arm64'\n"))
    with pytest.raises(ScenarioError, match=r"flow.name: the 'phys-call' flow calls kj-physcall.elf"):
        load_scenario(write(tmp_path, "[machine]\nname = 'x86_64-pc-virtio'\n[flow]\nname = 'phys-call'\n"))
    with pytest.raises(ScenarioError, match=r"machine.cpu: 'qemu64 -d' is not a QEMU CPU model"):
        load_scenario(write(tmp_path, "[machine]\nname = 'x86_64-pc-virtio'\ncpu = 'qemu64 -d'\n"))
    assert load_scenario(write(tmp_path, "[machine]\ncpu = 'core2duo,-mwait'\n")).machine.cpu == "core2duo,-mwait"


def test_default_scenario_values():
    sc = load_scenario(SCENARIOS_DIR / "i386-hibernate.toml")
    assert sc.flow.b_window == (0x100000, 0x1FFFFFF)
    assert sc.kernel.patches and sc.expect.verdict == "PASS"
    assert all(sc.quirks.values())


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, key, allowed",
    [
        ("[kernel]\nsauce = 'x'\n", "kernel.sauce", "arch, fragments"),
        ("[machine]\nname = 'pc-sparc'\n", "machine.name", "pc-virtio"),
        ("[quirks]\nwide-window = 'yes'\n", "quirks.wide-window", "true or false"),
        ("[quirks]\nno-such = true\n", "quirks.no-such", "crash-note"),
        ("[flow]\nb_window = ['0x100000']\n", "flow.b_window", "mem_min, mem_max"),
        ("[expect]\nverdict = 'MAYBE'\n", "expect.verdict", "TRIPLE_FAULT"),
        ("[bogus]\n", "bogus", "allowed: scenario"),
        ("[machine]\nmemory_mib = 99999\n", "machine.memory_mib", "128 to 8192"),
        ("[flow]\nname = 'swsusp'\nswsusp_mode = 'suspend'\n", "flow.swsusp_mode", "shutdown, reboot, test_resume"),
        ("[flow]\nname = 'swsusp'\n[machine]\nname = 'pc-ide'\n", "machine.disk_bus", "buses with one: virtio"),
    ],
)
def test_bad_scenarios_name_file_key_and_choices(tmp_path, text, key, allowed):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    msg = str(exc.value)
    assert str(tmp_path / "s.toml") in msg and key in msg and allowed in msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "[kernel\n"))


def test_the_swsusp_flow_has_a_swap_disk_on_the_machine():
    from lab.qemu_cmdline import BootFiles, qemu_argv

    sc = load_scenario(SCENARIOS_DIR / "flows" / "swsusp.toml")
    assert sc.flow.name == "swsusp" and sc.flow.swsusp_mode == "shutdown" and sc.machine.guest_swap == "/dev/vdb"
    files = BootFiles(kernel=Path("bz"), initrd=Path("rd"), append="x", disk=Path("hib.img"), serial_socket=Path("s"),
                      qmp_socket=Path("q"), cpu_reset_log=Path("c"), swap_disk=Path("swap,1.img"))
    argv = qemu_argv(sc.machine, files, "tcg")
    at = argv.index("file=swap,,1.img,format=raw,if=none,id=swap,cache=unsafe,werror=report,rerror=report")
    assert argv[at + 1:at + 3] == ["-device", "virtio-blk-pci,drive=swap"]
    assert argv.index("virtio-blk-pci,drive=hib") < at  # the hibernation disk stays /dev/vda
    assert not any("id=swap" in a for a in qemu_argv(sc.machine, BootFiles(**{**files.__dict__, "swap_disk": None}), "tcg"))


TWO_FACES = """
[expect]
verdict = "TRIPLE_FAULT"
step = "jump-to-B"
signature = 'Triple fault'

[[expect.also]]
verdict = "HANG"
step = "jump-to-B"
signature = 'CPU#0 EIP=[0-9a-f]{8} \\(kexec purgatory: purgatory\\+'
"""


def test_a_bug_with_two_faces_judges_each_on_its_own_step_and_signature(tmp_path):
    from lab.expectation import apply_expectation
    from lab.verdict import Verdict

    sc = load_scenario(write(tmp_path, TWO_FACES))
    assert (sc.expect.verdict, *(f.verdict for f in sc.expect.also)) == (Verdict.TRIPLE_FAULT, Verdict.HANG)

    def judge(observed, step, text):
        face = sc.expect.face_for(observed)
        return apply_expectation(observed, face.verdict, face.signature, face.step, step, [text])[0]

    hang = "-- CPUs --\nCPU#0 EIP=01ff411d (kexec purgatory: purgatory+0x2a) CS=0010"
    assert judge(Verdict.HANG, "jump-to-B", hang) is Verdict.XFAIL
    assert judge(Verdict.TRIPLE_FAULT, "jump-to-B", "v=08\nTriple fault") is Verdict.XFAIL
    # each face keeps its own signature and step: the hang's evidence does not excuse a triple
    # fault, a hang without the purgatory loop stays a HANG, and a hang elsewhere stays one
    assert judge(Verdict.TRIPLE_FAULT, "jump-to-B", hang) is Verdict.TRIPLE_FAULT
    assert judge(Verdict.HANG, "jump-to-B", "no kernel B's init within 120 s") is Verdict.HANG
    assert judge(Verdict.HANG, "jump-back", hang) is Verdict.HANG
    # a third failure is judged against the main face, and so reported as unexpected
    assert judge(Verdict.PANIC, "jump-to-B", "Kernel panic") is Verdict.PANIC
    assert sc.expect.face_for(Verdict.PANIC).verdict is Verdict.TRIPLE_FAULT


@pytest.mark.parametrize("text, match", [
    ('[expect]\nverdict = "PASS"\n[[expect.also]]\nverdict = "HANG"\nstep = "jump-to-B"\nsignature = "x"\n',
     "expect.also: other faces belong to an expected failure"),
    (TWO_FACES.replace('verdict = "HANG"', 'verdict = "TRIPLE_FAULT"'), "each face of a bug has its own verdict"),
    (TWO_FACES.replace('signature = \'CPU', 'sig = \'CPU'), r"expect.also\[0\]: a table of signature, step, verdict"),
    (TWO_FACES.replace('step = "jump-to-B"\nsignature = \'CPU', 'signature = \'CPU'), r"expect.also\[0\].step: required"),
    (TWO_FACES.replace('verdict = "HANG"', 'verdict = "PASS"'), r"expect.also\[0\]"),
])
def test_other_faces_of_a_bug_are_checked_like_the_first(tmp_path, text, match):
    with pytest.raises(ScenarioError, match=match):
        load_scenario(write(tmp_path, text))


def test_kernels_b_and_c_may_be_another_build(tmp_path):
    """[kernel_bc]: B's and C's kernel apart from A's (issue 25): its own source, fragments
    and patches, the machine's arch, validated as [kernel] is."""
    from lab.runner import kernel_a_spec, kernel_bc_spec, kernel_spec

    path = tmp_path / "ab.toml"
    path.write_text("""
[kernel]
source = "debian:linux-source-6.1"
patches = ["0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"]
[kernel_bc]
source = "debian:linux-source-7.2@sid"
[machine]
name = "q35-ahci-smp2"
""")
    sc = load_scenario(path)
    assert sc.kernel_bc is not None and sc.kernel_bc.source == "debian:linux-source-7.2@sid"
    assert sc.kernel_bc.arch is sc.kernel.arch and sc.kernel_bc.patches == ()
    assert kernel_a_spec(sc) is None and kernel_spec(sc).source == "debian:linux-source-6.1"
    bc = kernel_bc_spec(sc)
    assert bc is not None and set(kernel_spec(sc).fragments) == set(bc.fragments)  # the machine's fragments too
    path.write_text('[kernel_bc]\nsource = "debian:linux-source-7.2@sid"\narch = "x86_64"\n')
    with pytest.raises(ScenarioError, match="kernel_bc.*arch"):
        load_scenario(path)
    path.write_text('[kernel_bc]\npatches = ["no-such.patch"]\n')
    with pytest.raises(ScenarioError, match=r"kernel_bc.patches\[0\]: unknown patch"):
        load_scenario(path)


def test_a_offline_cpus_names_secondary_cpus_of_the_machine(tmp_path):
    from lab.scenario import scenario_from_dict

    smp2 = {"machine": {"name": "pc-virtio", "cpu": "core2duo", "smp": 2, "acpi": True}}
    sc = scenario_from_dict({**smp2, "flow": {"a_offline_cpus": [1]}}, tmp_path / "t.toml")
    assert sc.flow.a_offline_cpus == (1,)
    assert scenario_from_dict(smp2, tmp_path / "t.toml").flow.a_offline_cpus == ()
    for value, words in (([0], "from 1 to 7"), ([2], "CPU 2: the machine has 2"), ([1, 1], "each CPU once"),
                         ("1", "must be a list")):
        with pytest.raises(ScenarioError, match=words):
            scenario_from_dict({**smp2, "flow": {"a_offline_cpus": value}}, tmp_path / "t.toml")


def test_the_model_imports_no_flow():
    """Scenarios and matrices validate flow names against lab.flow_kinds: loading them pulls
    in none of lab.flows, which imports the model (the review's import circle 1, gone)."""
    import subprocess
    import sys

    code = ("import sys, lab.scenario, lab.matrix; "
            "print(sorted(m for m in sys.modules if m == 'lab.flows' or m.startswith('lab.flows.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_flow_kind_has_its_class():
    from lab.flow_kinds import FLOW_KINDS
    from lab.flows import FLOWS

    assert list(FLOWS) == list(FLOW_KINDS)
    assert all(FLOWS[name].kind is kind for name, kind in FLOW_KINDS.items())
