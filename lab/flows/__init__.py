"""Flows: sequences of named steps driven over the serial console and QMP.

FLOWS is the one registry of flow names: scenarios, matrices and the runner read it.
"""

from __future__ import annotations

from .common import FlowContext
from .hibernate import HibernateFlow
from .roundtrip import CyclesFlow, JumpRoundtripFlow
from .simple import KexecRebootFlow, PhysCallFlow
from .snapshot_debug import SnapshotDebugFlow
from .swsusp import SwsuspFlow

FLOWS: dict[str, type[FlowContext]] = {
    flow.name: flow
    for flow in (HibernateFlow, JumpRoundtripFlow, CyclesFlow, PhysCallFlow, KexecRebootFlow, SnapshotDebugFlow,
                 SwsuspFlow)
}
FLOW_NAMES: tuple[str, ...] = tuple(FLOWS)
