"""What a host can run: its QEMU binaries (and their versions), whether KVM is usable,
the arches that follows. A worker reports it; a cell needs some of it (cell_needs).

As Dask resources (lab.executors.dask): every capability is a resource named
``kjlab:<capability>`` with a quantity no night exhausts, beside the ``vm`` slots that a
worker is started with, so the scheduler routes a cell only to a worker that has what
it needs and never runs more guests on a host than it has slots."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field

from ..accel import probe_kvm
from ..matrix import Cell
from ..arch import Arch

PREFIX = "kjlab:"
PLENTY = 1_000_000.0  # a capability is not consumed: any number of cells may use it at once
VERSION_TIMEOUT = 30.0
QEMU_BINARIES = tuple(sorted(arch.info.qemu_binary for arch in Arch))


@dataclass(frozen=True)
class Capabilities:
    host: str
    qemu: dict[str, str] = field(default_factory=dict)  # binary -> first line of --version
    kvm: bool = False
    kvm_reason: str = ""

    @property
    def arches(self) -> list[str]:
        return sorted(arch.value for arch in Arch if arch.info.qemu_binary in self.qemu)

    def names(self) -> set[str]:
        """The capabilities as names: each QEMU binary, `arch-<arch>`, and `kvm` when usable."""
        names = set(self.qemu) | {f"arch-{a}" for a in self.arches}
        if self.kvm:
            names.add("kvm")
        return names

    def resources(self) -> dict[str, float]:
        return {PREFIX + n: PLENTY for n in sorted(self.names())}

    def describe(self) -> str:
        qemu = "; ".join(f"{b} ({v})" for b, v in sorted(self.qemu.items())) or "no QEMU"
        return f"{self.host}: {qemu}; KVM {'usable' if self.kvm else 'not usable'}"


def probe(binaries: tuple[str, ...] = QEMU_BINARIES) -> Capabilities:
    """This host's capabilities (a few `qemu-system-* --version` runs)."""
    qemu = {}
    for binary in binaries:
        path = shutil.which(binary)
        if path is None:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            qemu[binary] = (out.stdout.splitlines() or ["?"])[0].strip()
    kvm = probe_kvm()
    return Capabilities(host=platform.node() or os.uname().nodename, qemu=qemu, kvm=kvm.accel == "kvm",
                        kvm_reason=kvm.reason)


def cell_needs(cell: Cell) -> set[str]:
    """The capabilities a cell needs: the QEMU binary of its arch (KVM is never required:
    lab.accel falls back to TCG)."""
    return {Arch(cell.arch).info.qemu_binary}
