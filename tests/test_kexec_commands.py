"""The guest command lines of every scenario's flow, pinned by golden files
(tests/data/golden/<scenario>.commands). After an intended change, regenerate them with
KJLAB_REGEN_GOLDEN=1 and read the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab import kexec_commands as commands
from lab.flows import swsusp
from lab.scenario import Scenario, load_scenario

GOLDEN = Path(__file__).parent / "data" / "golden"
ENTRY = "0x020000d7"  # a jump-back entry as B's command line gives it
FILES = sorted(p for p in SCENARIOS_DIR.rglob("*.toml") if not p.name.endswith(".matrix.toml"))


def flow_commands(sc: Scenario) -> list[str]:
    """What the scenario's flow asks the guests to run, step by step."""
    q, f = sc.quirks, sc.flow
    if f.name == "kexec-reboot":
        return [commands.load_reboot_kernel(q)]
    if f.name == "phys-call":
        return [commands.load_physcall(q)]
    if f.name == "swsusp":
        dev = sc.machine.guest_swap
        return [swsusp.swap_on_command(dev), swsusp.mode_command(f.swsusp_mode), swsusp.HIBERNATE]
    out = [commands.load_b(q, f.b_window)]
    if f.name == "hibernate":
        return out + [commands.save_image(f.save, f.dump_level, "dump.elf"),
                      *commands.after_save(sc.kernel.arch, q, "dump.elf"), commands.load_image(q)]
    if f.name == "snapshot-debug":
        return out + [commands.save_image(f.save, f.dump_level, "snap1.elf"),
                      *commands.after_save(sc.kernel.arch, q, "snap1.elf"), commands.load_jump_back(q, ENTRY),
                      commands.save_image(f.save, f.dump_level, "snap2.elf"),
                      *commands.after_save(sc.kernel.arch, q, "snap2.elf"), commands.load_jump_back(q, ENTRY)]
    return out + [commands.load_jump_back(q, ENTRY)]  # jump-roundtrip, cycles


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SCENARIOS_DIR)))
def test_command_lines_match_the_golden_file(path: Path) -> None:
    sc = load_scenario(path)
    text = f"# {path.relative_to(SCENARIOS_DIR)} ({sc.flow.name})\n" + "\n".join(flow_commands(sc)) + "\n"
    golden = GOLDEN / f"{sc.name}.commands"
    if os.environ.get("KJLAB_REGEN_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}: run with KJLAB_REGEN_GOLDEN=1"
    assert text == golden.read_text()


def test_every_quirk_off_changes_what_it_should() -> None:
    on = {"kexec-syscall": True, "wide-window": True, "pass-memmap": True, "own-jump-back-helper": True}
    window = (0x100000, 0x1FFFFFF)
    assert commands.load_b(on, window) == (
        "kexec -d -x -c --load-preserve-context /boot/bzImage --mem-min=0x100000 --mem-max=0x1ffffff"
        " --initrd=/boot/rootfsB.gz --pass-memmap-cmdline --append='console=ttyS0 loglevel=7 kjlab.role=B'")
    assert "--mem-max=0xffffff " in commands.load_b({**on, "wide-window": False}, window)
    assert "--pass-memmap-cmdline" not in commands.load_b({**on, "pass-memmap": False}, window)
    assert commands.kexec({**on, "kexec-syscall": False}) == "kexec -d -x"
    assert commands.load_jump_back(on, ENTRY) == f"kj-jump-back {ENTRY}"
    assert commands.load_jump_back({**on, "own-jump-back-helper": False}, ENTRY).endswith(
        f"--load-jump-back-helper --entry={ENTRY}")
    assert commands.save_image("makedumpfile", 31, "dump.elf") == (
        "time makedumpfile -E -d 31 -i /mnt/vmcoreinfo /proc/vmcore /mnt/dump.elf")
