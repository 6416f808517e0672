"""The two flows of the older seeds: a plain kexec reboot (seed 001) and seed 003's
"call a program in physical mode and return"."""

from __future__ import annotations

from .. import kexec_commands as commands
from ..errors import ConsoleEOF, ConsoleTimeout
from ..verdict import Verdict
from .base import FlowStop
from .common import FlowContext
from ..flow_kinds import FLOW_KINDS


class KexecRebootFlow(FlowContext):
    """kexec -l of a new kernel, kexec -e: the new kernel boots (no return)."""

    kind = FLOW_KINDS["kexec-reboot"]
    summary = "seed 001: plain kexec -l / kexec -e reboot into a new kernel"

    pass_reason = "the kexec'd kernel booted with the command line it was given"

    def run(self) -> None:
        with self.vm_a() as vm:
            with self.rec.step("boot-A", "Boot kernel A", "-", vm):
                self.wait_ready(vm, "A")
            with self.rec.step("load", "kexec -l the new kernel and its initramfs", "-", vm):
                self.run_ok(vm, commands.load_reboot_kernel(self.quirks), "load")
            with self.rec.step("reboot", "kexec -e: the new kernel boots", "-", vm):
                vm.console.send_line("kexec -x -e")
                self.rec.note("kexec -x -e")
                self.wait_ready(vm, "R")
            with self.rec.step("verify-R", "The new kernel runs with the command line it was given", "-", vm):
                cmdline = self.run_ok(vm, "cat /proc/cmdline", verdict=Verdict.CHECK_FAILED)
                if "kjlab.role=R" not in cmdline:
                    raise FlowStop(Verdict.CHECK_FAILED, "the rebooted kernel has not the command line it was loaded with", [cmdline])


class PhysCallFlow(FlowContext):
    """A loads kj-physcall.elf with --load-preserve-context --args-none and kexec -e calls it
    with paging off; it writes a marker on COM1 and returns; A goes on."""

    kind = FLOW_KINDS["phys-call"]
    summary = "seed 003: call a program in physical mode (kj-physcall.elf) and return to A"

    MARKER = "KJLAB-PHYSCALL"
    pass_reason = "the physical-mode program ran and returned; A went on and every check held"

    def run(self) -> None:
        with self.vm_a() as vm:
            self.boot_a(vm)
            with self.rec.step("load-program", "Load the physical-mode program", "-", vm):
                # kexec-tools wants a window with --load-preserve-context; the program's one
                # PT_LOAD is the page at 16 MiB (guests/progs/kj-physcall.ld).
                self.with_iomem_filter(vm, lambda: self.run_ok(vm, commands.load_physcall(self.quirks), "load"))
            with self.rec.step("call", "kexec -e: call it in physical mode and return", "-", vm):
                with self.interrupt_logging(vm):
                    marker = self.a_jump_out(vm)
                    try:
                        vm.console.expect([self.MARKER], self.timeouts["jump"], "the program's marker on COM1")
                    except (ConsoleTimeout, ConsoleEOF) as e:
                        raise self.console_stop(vm, e) from None
                    self.jump_returned(vm, marker, "A")
            self.verify_a(vm, disk=True)
