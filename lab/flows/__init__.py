"""Flows: sequences of named steps driven over the serial console and QMP.

FLOWS maps each flow's name (its kind, lab.flow_kinds: the model's one list of flows) to the
class that runs it; the runner and the CLI read it. Scenarios and matrices validate names
against lab.flow_kinds and import nothing of this package.
"""

from __future__ import annotations

from ..flow_kinds import FLOW_NAMES
from .common import FlowContext
from .hibernate import HibernateFlow
from .roundtrip import CyclesFlow, JumpRoundtripFlow
from .simple import KexecRebootFlow, PhysCallFlow
from .snapshot_debug import SnapshotDebugFlow
from .swsusp import SwsuspFlow

FLOWS: dict[str, type[FlowContext]] = {
    flow.kind.name: flow
    for flow in (HibernateFlow, JumpRoundtripFlow, CyclesFlow, PhysCallFlow, KexecRebootFlow, SnapshotDebugFlow,
                 SwsuspFlow)
}
if tuple(FLOWS) != FLOW_NAMES:  # every kind has its class, and no class is without its kind
    raise ImportError(f"lab.flows registers {sorted(FLOWS)}, lab.flow_kinds lists {sorted(FLOW_NAMES)}")
