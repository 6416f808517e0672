"""Seed 004's "cooperative multi-kernel": A -> B -> A without a power cycle, once or N times."""

from __future__ import annotations

from ..guest import GuestVM
from .common import FlowContext
from ..flow_kinds import FLOW_KINDS


class JumpRoundtripFlow(FlowContext):
    """A jumps to B; B jumps straight back with kj-jump-back; A's state is checked."""

    kind = FLOW_KINDS["jump-roundtrip"]
    hands_over_resumed_a = True
    summary = "A -> B -> A directly, B jumps back with kj-jump-back (seed 004, cooperative multi-kernel)"

    def run(self) -> None:
        with self.vm_a() as vm:
            self.boot_a(vm)
            self.load_b(vm)
            before = self.snapshot(vm, "A-before-jump", "Memory snapshot of A before the jump")
            a_marker = self.jump_to_b(vm)
            entry = self.b_entry_step(vm)
            self.b_jump_back(vm, entry, a_marker)
            self.verify_a(vm, disk=True)
            self.hand_over(vm)
            after = self.snapshot(vm, "A-resumed", "Memory snapshot of A after the round trip")
        self.check_memory(before, after)

    def b_entry_step(self, vm: GuestVM) -> str:
        with self.rec.step("entry-B", "Read A's jump-back entry from B's command line", "7", vm):
            return self.b_entry(vm)


class CyclesFlow(JumpRoundtripFlow):
    """N round trips in a row. The first boots B; later ones switch into B where it left
    off (B's shell returns from its own kexec -e) and back: no boot after the first."""

    kind = FLOW_KINDS["cycles"]
    summary = "N round trips A <-> B in a row, A's state checked after each"

    pass_reason = "every round trip came back to A and every check held after each"

    def run(self) -> None:
        n = self.sc.flow.cycles
        with self.vm_a() as vm:
            self.boot_a(vm)
            self.load_b(vm)
            a_marker = self.jump_to_b(vm, step="jump-to-B-1")
            entry = self.b_entry_step(vm)
            b_marker = self.b_jump_back(vm, entry, a_marker, step="jump-back-1")
            self.verify_a(vm, step="verify-A-1", disk=False)
            for i in range(2, n + 1):
                with self.rec.step(f"jump-to-B-{i}", f"Cycle {i}: kexec -e in A resumes B where it left off", "6", vm):
                    a_marker = self.a_jump_out(vm)
                    self.jump_returned(vm, b_marker, "B")
                with self.rec.step(f"jump-back-{i}", f"Cycle {i}: kexec -e in B resumes A", "-", vm):
                    with self.interrupt_logging(vm):
                        b_marker = vm.console.start("kexec -x -e")
                        self.rec.note("kexec -x -e")
                        self.jump_returned(vm, a_marker, "A")
                self.verify_a(vm, step=f"verify-A-{i}", disk=False)
