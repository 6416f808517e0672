"""Virtual hardware as data: one frozen value per named configuration."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import UserError

DISK_BUSES = ("virtio", "ide")
# The block device name the guest kernel gives the hibernation disk on each bus.
GUEST_DISK_DEVICE = {"virtio": "/dev/vda", "ide": "/dev/sda"}


@dataclass(frozen=True)
class MachineSpec:
    name: str
    arch: str = "i386"
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

    def with_overrides(self, **values: object) -> "MachineSpec":
        return replace(self, **values)  # type: ignore[arg-type]


MACHINES: dict[str, MachineSpec] = {
    m.name: m
    for m in (
        MachineSpec("pc-virtio"),
        MachineSpec("pc-ide", disk_bus="ide"),
    )
}


def get_machine(name: str) -> MachineSpec:
    try:
        return MACHINES[name]
    except KeyError:
        raise UserError(f"unknown machine {name!r}; available: {', '.join(sorted(MACHINES))}") from None
