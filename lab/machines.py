"""Virtual hardware as data: guests/machines/<name>.toml, one frozen value per file.

The kernel config fragments a machine needs (its disk bus driver, SMP, ACPI) follow
from it: `machine_fragments()`; nobody edits a kernel config by hand for a machine.
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
    return tuple(frags)


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
    return spec


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
    return validate(MachineSpec(name=path.stem, **data), where)


@cache
def machines() -> dict[str, MachineSpec]:
    return {p.stem: load_machine(p) for p in sorted(MACHINES_DIR.glob("*.toml"))}


def get_machine(name: str) -> MachineSpec:
    try:
        return machines()[name]
    except KeyError:
        raise UserError(f"unknown machine {name!r}; available: {', '.join(sorted(machines()))}") from None
