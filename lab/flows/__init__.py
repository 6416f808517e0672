"""Flows: sequences of named steps driven over the serial console and QMP."""

from __future__ import annotations

from .common import FlowContext
from .hibernate import HibernateFlow
from .roundtrip import CyclesFlow, JumpRoundtripFlow
from .simple import KexecRebootFlow, PhysCallFlow
from .snapshot_debug import SnapshotDebugFlow

FLOWS: dict[str, type[FlowContext]] = {
    "hibernate": HibernateFlow,
    "jump-roundtrip": JumpRoundtripFlow,
    "cycles": CyclesFlow,
    "phys-call": PhysCallFlow,
    "kexec-reboot": KexecRebootFlow,
    "snapshot-debug": SnapshotDebugFlow,
}

FLOW_SUMMARIES = {
    "hibernate": "the ten steps of seed 004: A -> B saves A's image -> power off -> C loads it -> A resumes",
    "jump-roundtrip": "A -> B -> A directly, B jumps back with kj-jump-back (seed 004, cooperative multi-kernel)",
    "cycles": "N round trips A <-> B in a row, A's state checked after each",
    "phys-call": "seed 003: call a program in physical mode (kj-physcall.elf) and return to A",
    "kexec-reboot": "seed 001: plain kexec -l / kexec -e reboot into a new kernel",
    "snapshot-debug": "seed 004: two images of one A saved at two moments, both checked on the host",
}
