"""Virtual hardware as data: guests/machines/<name>.toml, one frozen value per file.

The kernel config fragments a machine needs (its disk bus driver, SMP, ACPI, PAE) follow
from it: `machine_fragments()`; nobody edits a kernel config by hand for a machine.
Where QEMU puts the machine's RAM in the guest's physical address space (below and
above 4 GiB) follows from it too: `ram_ranges()`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from . import GUESTS_DIR
from .arch import Arch, parse_arch
from .errors import ScenarioError, UserError

MACHINES_DIR = GUESTS_DIR / "machines"
DISK_BUSES = ("virtio", "ide", "ahci", "scsi", "usb", "nvme")
MACHINE_TYPES = ("pc", "q35")
ACCELS = ("auto", "tcg", "kvm")
# -cpu: a QEMU model name, optionally with +/- features (Icelake-Server,-mwait): never a
# second option, never a key=value QEMU would read as something else
CPU_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(,[+-][A-Za-z0-9_.-]{1,40})*")
# The block device the guest kernel gives the hibernation disk on each bus.
GUEST_DISK_DEVICE = {"virtio": "/dev/vda", "ide": "/dev/sda", "ahci": "/dev/sda", "scsi": "/dev/sda",
                     "usb": "/dev/sda", "nvme": "/dev/nvme0n1"}
# The swap disk of the swsusp flow, the second disk on the bus (lab.qemu_cmdline.SWAP_DEVICES).
GUEST_SWAP_DEVICE = {"virtio": "/dev/vdb"}
# Fragments (guests/kernel/configs) per bus; virtio and IDE are in the base fragment.
BUS_FRAGMENTS = {"virtio": (), "ide": (), "ahci": ("bus-ahci",), "scsi": ("bus-scsi",),
                 "usb": ("bus-usb",), "nvme": ("bus-nvme",)}
# Fragments that change what the kernel is rather than what it drives: a kernel built with
# one of them does not boot on every machine (a PAE kernel needs a CPU with PAE: "This
# kernel requires the following features not present on the CPU: pae"), so a matrix
# builds them apart instead of into the union of its machines' fragments (lab.matrix).
KERNEL_VARIANT_FRAGMENTS = ("pae",)
# QEMU's x86 CPU models without PAE (target/i386/cpu.c: I486_FEATURES, PENTIUM_FEATURES);
# every family-6 model has it. A model with ",-pae" lacks it as well.
NO_PAE_CPUS = ("486", "486-v1", "pentium", "pentium-v1")
GIB = 1 << 30
FOUR_GIB = 4 * GIB


@dataclass(frozen=True)
class MachineSpec:
    name: str
    description: str = ""
    arch: Arch = Arch.I386
    machine: str = "pc"
    cpu: str = "qemu32"
    memory_mib: int = 256
    smp: int = 1
    acpi: bool = False
    disk_bus: str = "virtio"
    accel: str = "auto"  # "auto": KVM if a probe shows it works, else TCG
    pae: bool = False  # i386: the kernel is built with PAE (fragment "pae"); RAM above 4 GiB needs it
    # the CPU features the machine is there for, as /proc/cpuinfo names them: "pae" must be
    # there, "-monitor" must not; kernel A's CPU is checked at boot (TCG drops what it cannot do)
    cpu_flags: tuple[str, ...] = ()

    @property
    def guest_disk(self) -> str:
        return GUEST_DISK_DEVICE[self.disk_bus]

    @property
    def guest_swap(self) -> str:
        """The swap disk's device in the guest ("" where the bus has no swap disk yet)."""
        return GUEST_SWAP_DEVICE.get(self.disk_bus, "")

    def with_overrides(self, **values: Any) -> "MachineSpec":
        return replace(self, **values)


def machine_fragments(spec: MachineSpec) -> tuple[str, ...]:
    frags = list(BUS_FRAGMENTS[spec.disk_bus])
    if spec.smp > 1:
        frags.append("smp")
    if spec.acpi:
        frags.append("acpi")
    if spec.pae:
        frags.append("pae")
    return tuple(frags)


def kernel_variant(spec: MachineSpec) -> tuple[str, ...]:
    """The machine's fragments that make a kernel of its own (KERNEL_VARIANT_FRAGMENTS)."""
    return tuple(f for f in machine_fragments(spec) if f in KERNEL_VARIANT_FRAGMENTS)


def ram_below_4g(machine: str, memory_mib: int) -> int:
    """Bytes of RAM QEMU (7.2) maps from physical 0; the rest starts at 4 GiB. The pc
    (i440FX) machine keeps up to 3.5 GiB below 4 GiB, but once RAM reaches 3.5 GiB it
    splits at 3 GiB (gigabyte_align, hw/i386/pc_piix.c); q35 splits at 2 GiB once RAM
    reaches 2.75 GiB (hw/i386/pc_q35.c). The hole up to 4 GiB is PCI, MMIO and firmware."""
    ram = memory_mib << 20
    if machine == "q35":
        return 2 * GIB if ram >= 0xB0000000 else ram
    return 3 * GIB if ram >= 0xE0000000 else ram


def ram_ranges(spec: MachineSpec, memory_mib: int | None = None) -> list[tuple[int, int]]:
    """The guest-physical ranges [start, end) of the machine's RAM (with `memory_mib`
    instead of the machine's own, e.g. kernel C's)."""
    ram = (spec.memory_mib if memory_mib is None else memory_mib) << 20
    low = ram_below_4g(spec.machine, ram >> 20)
    return [(0, low)] + ([(FOUR_GIB, FOUR_GIB + ram - low)] if ram > low else [])


def ram_top(spec: MachineSpec, memory_mib: int | None = None) -> int:
    """One past the machine's highest RAM address (above 4 GiB once QEMU splits its RAM)."""
    return ram_ranges(spec, memory_mib)[-1][1]


def cpu_has_pae(cpu: str) -> bool:
    """Whether the QEMU CPU model string (a model and +/- features) offers PAE."""
    model, *features = cpu.split(",")
    if "-pae" in features:
        return False
    return model not in NO_PAE_CPUS or "+pae" in features


def validate(spec: MachineSpec, where: str, prefix: str = "") -> MachineSpec:
    """Check every value; an error names the file, the key and what is allowed."""
    def bad(key: str, msg: str) -> ScenarioError:
        return ScenarioError(where, prefix + key, msg)

    if not isinstance(spec.arch, Arch):
        raise bad("arch", f"{spec.arch!r} is not allowed; options are {', '.join(Arch.names())}")
    if spec.machine not in MACHINE_TYPES:
        raise bad("machine", f"{spec.machine!r} is not allowed; options are {', '.join(MACHINE_TYPES)}")
    if not isinstance(spec.cpu, str) or not CPU_RE.fullmatch(spec.cpu):
        raise bad("cpu", f"{spec.cpu!r} is not a QEMU CPU model: a name like Icelake-Server or core2duo, "
                  "optionally with ,+feature or ,-feature")
    if spec.disk_bus not in DISK_BUSES:
        raise bad("disk_bus", f"{spec.disk_bus!r} is not allowed; options are {', '.join(DISK_BUSES)}")
    if spec.accel not in ACCELS:
        raise bad("accel", f"{spec.accel!r} is not allowed; options are {', '.join(ACCELS)}")
    for key, lo, hi in (("memory_mib", 128, spec.arch.info.max_memory_mib), ("smp", 1, 8)):
        value = getattr(spec, key)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise bad(key, f"must be a whole number from {lo} to {hi}")
    if not isinstance(spec.acpi, bool):
        raise bad("acpi", "must be true or false")
    if spec.smp > 1 and not spec.acpi:
        raise bad("smp", "more than one CPU needs acpi = true: the kernels find the other CPUs in the ACPI "
                  "tables (their config has no MP-table parsing)")
    if spec.disk_bus == "ide" and spec.machine == "q35":
        raise bad("disk_bus", "q35 has no IDE controller; use ahci")
    if not isinstance(spec.pae, bool):
        raise bad("pae", "must be true or false")
    if spec.pae and spec.arch is not Arch.I386:
        raise bad("pae", f"an i386 setting ({spec.arch} kernels always have 64-bit page table entries)")
    if spec.pae and not cpu_has_pae(spec.cpu):
        raise bad("pae", f"the CPU {spec.cpu!r} has no PAE, and a PAE kernel stops at boot (\"This kernel requires "
                  "the following features not present on the CPU: pae\"): choose a CPU with PAE or pae = false")
    if not isinstance(spec.cpu_flags, tuple) or not all(isinstance(f, str) and CPU_FLAG_RE.fullmatch(f)
                                                         for f in spec.cpu_flags):
        raise bad("cpu_flags", "must be a list of /proc/cpuinfo flags, each one lower-case letters, digits and _, "
                  "with - before one that must be absent, e.g. [\"pae\", \"-monitor\"]")
    unreachable = ram_unreachable(spec, spec.memory_mib)
    if unreachable:
        raise bad("memory_mib", unreachable)
    return spec


CPU_FLAG_RE = re.compile(r"-?[a-z0-9_]{1,40}")


def cpu_flags_mismatch(wanted: tuple[str, ...], cpuinfo_flags: set[str]) -> list[str]:
    """The machine's cpu_flags that kernel A's CPU does not bear out, as lines of evidence."""
    out = []
    for flag in wanted:
        name = flag.lstrip("-")
        if flag.startswith("-") and name in cpuinfo_flags:
            out.append(f"{name}: the machine's CPU must not have it, and A's /proc/cpuinfo lists it")
        elif not flag.startswith("-") and name not in cpuinfo_flags:
            out.append(f"{name}: the machine's CPU must have it, and A's /proc/cpuinfo does not list it")
    return out


def ram_unreachable(spec: MachineSpec, memory_mib: int) -> str:
    """Why `memory_mib` of RAM does not suit the machine's kernel, or "": an i386 machine
    without PAE must keep its RAM below 4 GiB, as a kernel without PAE cannot address the
    rest ("Warning: only 4GB will be used")."""
    if spec.arch is Arch.I386 and not spec.pae and ram_top(spec, memory_mib) > FOUR_GIB:
        low = ram_below_4g(spec.machine, memory_mib) >> 20
        return (f"{memory_mib} MiB on {spec.machine} puts {memory_mib - low} MiB above 4 GiB (QEMU maps "
                f"{low} MiB below it), which an i386 kernel without PAE cannot use: set pae = true (with a "
                "CPU that has PAE) or give the machine less memory")
    return ""


def load_machine(path: Path) -> MachineSpec:
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(where, "", f"not valid TOML: {e}") from None
    allowed = {f.name for f in fields(MachineSpec)} - {"name"}
    for key in data:
        if key not in allowed:
            raise ScenarioError(where, key, f"unknown key; allowed: {', '.join(sorted(allowed))}")
    if "arch" in data:
        arch = parse_arch(data["arch"])
        if arch is None:
            raise ScenarioError(where, "arch", f"{data['arch']!r} is not allowed; options are {', '.join(Arch.names())}")
        data["arch"] = arch
    if isinstance(data.get("cpu_flags"), list):
        data["cpu_flags"] = tuple(data["cpu_flags"])
    return validate(MachineSpec(name=path.stem, **data), where)


@cache
def machines() -> dict[str, MachineSpec]:
    return {p.stem: load_machine(p) for p in sorted(MACHINES_DIR.glob("*.toml"))}


def get_machine(name: str) -> MachineSpec:
    try:
        return machines()[name]
    except KeyError:
        raise UserError(f"unknown machine {name!r}; available: {', '.join(sorted(machines()))}") from None
