"""The flows as the model knows them: each flow's name and what it needs of the machine,
and the timeouts a scenario may set - without importing the flows (lab.flows), which
import the model. Each flow class takes its kind from here (FlowContext.kind), so the names
are defined once; lab.flows registers the classes by these kinds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlowKind:
    name: str  # in scenario files: flow.name
    needs_physcall: bool = False  # the flow runs kj-physcall.elf (lab.arch.ArchInfo.physcall)


FLOW_KINDS: dict[str, FlowKind] = {k.name: k for k in (
    FlowKind("hibernate"),
    FlowKind("jump-roundtrip"),
    FlowKind("cycles"),
    FlowKind("phys-call", needs_physcall=True),
    FlowKind("kexec-reboot"),
    FlowKind("snapshot-debug"),
    FlowKind("swsusp"),
)}
FLOW_NAMES: tuple[str, ...] = tuple(FLOW_KINDS)

# What a scenario's flow.timeouts may set, and the defaults (seconds)
DEFAULT_TIMEOUTS = {
    "boot": 120.0,
    "command": 60.0,
    "load": 180.0,
    "save": 600.0,
    "jump": 120.0,
    "power-off": 60.0,
    "after-resume": 60.0,  # flow.after_resume_command (a test option that may kill A on purpose)
}
