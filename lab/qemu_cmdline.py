"""A machine spec and the run's files -> the QEMU argument list (never a shell string)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .machines import MachineSpec

QEMU_BINARY = {"i386": "qemu-system-i386", "x86_64": "qemu-system-x86_64"}


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    initrd: Path
    append: str
    disk: Path
    serial_socket: Path
    qmp_socket: Path
    cpu_reset_log: Path
    gdb_socket: Path | None = None  # QEMU's gdbstub, for breakpoints at exact moments (lab.gdbstub)
    swap_disk: Path | None = None  # a second disk, the swap device of the kernel's own hibernation (swsusp)


DISK_DEVICES: dict[str, list[str]] = {
    "virtio": ["-device", "virtio-blk-pci,drive=hib"],
    "ide": ["-device", "ide-hd,drive=hib,bus=ide.0"],
    "ahci": ["-device", "ahci,id=ahci0", "-device", "ide-hd,drive=hib,bus=ahci0.0"],
    "scsi": ["-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=hib,bus=scsi0.0"],
    "usb": ["-device", "usb-ehci,id=ehci0", "-device", "usb-storage,drive=hib,bus=ehci0.0"],
    "nvme": ["-device", "nvme,drive=hib,serial=kjlab-hib"],
}


def opt_value(value: object) -> str:
    """A value inside a QEMU option string (key=value,...): commas are doubled, so a
    path with a comma stays one value."""
    return str(value).replace(",", ",,")


def disk_args(bus: str, disk: Path) -> list[str]:
    if bus not in DISK_DEVICES:
        raise ValueError(f"unknown disk bus {bus!r}")
    # werror/rerror=report: a host I/O error (a full host disk) reaches the guest as an
    # I/O error at once and QMP reports BLOCK_IO_ERROR, instead of QEMU pausing the guest
    # (the default on ENOSPC), which would look like a kernel hang.
    return ["-drive", f"file={opt_value(disk)},format=raw,if=none,id=hib,cache=unsafe,werror=report,rerror=report",
            *DISK_DEVICES[bus]]


# The swap disk, a second disk on the same bus (lab.machines.GUEST_SWAP_DEVICE names it in
# the guest). Only virtio so far: the other buses' second-disk names are not measured yet.
SWAP_DEVICES: dict[str, list[str]] = {
    "virtio": ["-device", "virtio-blk-pci,drive=swap"],
}


def swap_disk_args(bus: str, disk: Path | None) -> list[str]:
    if disk is None:
        return []
    if bus not in SWAP_DEVICES:
        raise ValueError(f"no swap disk on the {bus!r} bus; buses with one: {', '.join(SWAP_DEVICES)}")
    return ["-drive", f"file={opt_value(disk)},format=raw,if=none,id=swap,cache=unsafe,werror=report,rerror=report",
            *SWAP_DEVICES[bus]]


def gdb_args(files: BootFiles) -> list[str]:
    if files.gdb_socket is None:
        return []
    return ["-chardev", f"socket,id=gdb0,path={opt_value(files.gdb_socket)},server=on,wait=off", "-gdb", "chardev:gdb0"]


def qemu_argv(spec: MachineSpec, files: BootFiles, accel: str) -> list[str]:
    machine = f"{spec.machine},acpi={'on' if spec.acpi else 'off'}"
    return [
        QEMU_BINARY[spec.arch],
        "-accel", accel,
        "-machine", machine,
        "-cpu", spec.cpu,
        "-m", f"{spec.memory_mib}M",
        "-smp", str(spec.smp),
        "-nodefaults", "-nographic", "-vga", "none",
        # Start paused: the lab connects QMP and the console first, then `cont`,
        # so not one byte of the boot is lost.
        "-S",
        # A guest's reset (reboot -f, a triple fault, a panic's reboot) or power off stops
        # the machine but keeps QEMU and the guest's memory: the lab sees SHUTDOWN on QMP,
        # dumps the memory of a machine that died silently, then quits QEMU (lab.vm).
        "-action", "reboot=shutdown,shutdown=pause",
        "-kernel", str(files.kernel),
        "-initrd", str(files.initrd),
        "-append", files.append,
        *disk_args(spec.disk_bus, files.disk),
        *swap_disk_args(spec.disk_bus, files.swap_disk),
        "-chardev", f"socket,id=ser0,path={opt_value(files.serial_socket)},server=on,wait=off",
        "-serial", "chardev:ser0",
        "-qmp", f"unix:{opt_value(files.qmp_socket)},server=on,wait=off",
        *gdb_args(files),
        # cpu_reset logs the CPU state at every reset and "Triple fault" when one happens:
        # with every reset ending the machine, that is the only way to tell a triple fault from `reboot -f`.
        "-d", "cpu_reset", "-D", str(files.cpu_reset_log),
    ]
