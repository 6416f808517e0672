"""The ten steps of seed 004 (kexec jump hibernation), driven for real.

A boots; loads B with --load-preserve-context; jumps (kexec -e); B saves A's memory
from /proc/vmcore to the hibernation disk and powers off (QEMU exits: -no-reboot);
a new QEMU boots C on the same disk; C loads the image with --entry=the jump-back
entry; kexec -e jumps back into A, whose shell returns from its own `kexec -e`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from ..errors import ConsoleEOF, ConsoleTimeout
from ..machines import MachineSpec
from ..qemu_cmdline import BootFiles
from ..results import Check
from ..scenario import Scenario
from ..verdict import PANIC_RE, jump_back_entry, kexec_error_lines, panic_lines, parse_checks
from ..vm import QemuVM
from .base import FlowStop, Recorder, step_console_text, stop_for_console_failure

log = logging.getLogger(__name__)

DEFAULT_TIMEOUTS = {
    "boot": 120.0,
    "command": 60.0,
    "load": 120.0,
    "save": 300.0,
    "jump": 120.0,
    "power-off": 60.0,
}
READY_RE = r"KJLAB-READY role={role}\b"


@dataclass(frozen=True)
class FlowArtifacts:
    kernel: Path
    initrd_a: Path  # carries /boot/bzImage and /boot/rootfsB.gz for kernel B
    initrd_c: Path
    disk: Path


class HibernateFlow:
    def __init__(self, scenario: Scenario, art: FlowArtifacts, run_dir: Path, sock_dir: Path,
                 rec: Recorder, accel: str) -> None:
        self.sc, self.art, self.run_dir, self.sock_dir, self.rec, self.accel = scenario, art, run_dir, sock_dir, rec, accel
        self.quirks = scenario.quirks
        self.timeouts = {**DEFAULT_TIMEOUTS, **scenario.flow.timeouts}
        self.entry = ""
        self.jump_marker = ""

    # -- helpers --------------------------------------------------------------------------

    def _vm(self, name: str, append: str, initrd: Path) -> QemuVM:
        files = BootFiles(
            kernel=self.art.kernel, initrd=initrd, append=append, disk=self.art.disk,
            serial_socket=self.sock_dir / f"serial-{name}.sock", qmp_socket=self.sock_dir / f"qmp-{name}.sock",
            cpu_reset_log=self.run_dir / f"cpu-reset-{name}.log",
        )
        vm = QemuVM(name, self.machine, files, self.accel, self.run_dir)
        self.rec.result.artifacts.update({
            f"console {name}": vm.console_log.name, f"QEMU log {name}": vm.stderr_log.name,
            f"cpu_reset log {name}": files.cpu_reset_log.name, "QMP log": vm.qmp_log.name,
        })
        return vm

    @property
    def machine(self) -> MachineSpec:
        return self.sc.machine

    def _kexec(self) -> str:
        return "kexec -d -x" + (" -c" if self.quirks["kexec-syscall"] else "")

    def _run_ok(self, vm: QemuVM, command: str, timeout_key: str = "command", verdict: str = "KEXEC_ERROR") -> str:
        """Run a command that must succeed; a failure ends the flow with its output as evidence."""
        try:
            result = self.rec.run(vm.console, command, self.timeouts[timeout_key])
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self._text(vm)) from None
        if result.status != 0:
            evidence = kexec_error_lines(result.output) or result.output.splitlines()[-15:]
            raise FlowStop(verdict, f"`{command}` exited {result.status}", evidence)
        return result.output

    def _text(self, vm: QemuVM) -> str:
        assert self.rec.current is not None
        return step_console_text(vm, self.rec.current)

    def _wait_ready(self, vm: QemuVM, role: str) -> None:
        try:
            vm.console.expect([READY_RE.format(role=role)], self.timeouts["boot"], f"kernel {role}'s init")
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self._text(vm)) from None
        self._run_ok(vm, "uname -r; cat /proc/cmdline", verdict="HANG")

    def _snapshot(self, vm: QemuVM, name: str, title: str) -> None:
        with self.rec.step(f"snapshot-{name}", title, "-", vm):
            path = self.run_dir / f"snapshot-{name}.elf"
            t0 = time.monotonic()
            vm.monitor.cmd("stop")
            try:
                vm.monitor.cmd("dump-guest-memory", timeout=300, paging=False, protocol=f"file:{path}")
            finally:
                vm.monitor.cmd("cont")
            seconds = time.monotonic() - t0
            self.rec.note(f"QMP stop; dump-guest-memory file:{path.name}; cont", f"{path.stat().st_size} bytes", 0, seconds)
            self.rec.result.snapshots.append({"name": name, "path": path.name, "bytes": path.stat().st_size,
                                              "vm": vm.name, "taken": time.time()})

    # -- the flow -------------------------------------------------------------------------

    def run(self) -> None:
        a_append = "console=ttyS0 loglevel=7 kjlab.role=A" + (f" mem={self.sc.flow.a_mem}" if self.sc.flow.a_mem else "")
        with self._vm("A-B", a_append, self.art.initrd_a) as vm:
            self.phase_a(vm)
            self.phase_b(vm)
        with self._vm("C-A", "console=ttyS0 loglevel=7 kjlab.role=C", self.art.initrd_c) as vm:
            self.phase_c(vm)
            self.phase_resumed(vm)

    def phase_a(self, vm: QemuVM) -> None:
        with self.rec.step("boot-A", "Boot kernel A", "4", vm):
            self._wait_ready(vm, "A")
        with self.rec.step("prepare-A", "Give A state that must survive (proof file, counter)", "-", vm):
            self._run_ok(vm, f"kj-proof-setup {self.sc.flow.proof_kib}", verdict="CHECK_FAILED")
        with self.rec.step("load-B", "Load kernel B with kexec --load-preserve-context", "5", vm):
            self.load_b(vm)
        self._snapshot(vm, "A-before-jump", "Memory snapshot of A before the jump")
        with self.rec.step("jump-to-B", "kexec -e: jump to kernel B", "6", vm):
            self.jump_marker = vm.console.start("kexec -x -e")
            self.rec.note("kexec -x -e")
            self._wait_ready(vm, "B")

    def load_b(self, vm: QemuVM) -> None:
        if self.quirks["crash-note"]:
            self._run_ok(vm, "kj-crash-note")
        lo, hi = self.sc.flow.b_window
        if not self.quirks["wide-window"]:
            hi = min(hi, 0xFFFFFF)
        if self.quirks["iomem-filter"]:
            self._run_ok(vm, "kj-iomem-filter on")
        memmap = " --pass-memmap-cmdline" if self.quirks["pass-memmap"] else ""
        try:
            self._run_ok(
                vm,
                f"{self._kexec()} --load-preserve-context /boot/bzImage --mem-min={lo:#x} --mem-max={hi:#x}"
                f" --initrd=/boot/rootfsB.gz{memmap} --append='console=ttyS0 loglevel=7 kjlab.role=B'",
                "load",
            )
        finally:
            if self.quirks["iomem-filter"] and vm.running():
                self.rec.run(vm.console, "kj-iomem-filter off", self.timeouts["command"])

    def phase_b(self, vm: QemuVM) -> None:
        disk = self.machine.guest_disk
        with self.rec.step("save-image", "Save A's memory image from /proc/vmcore to the hibernation disk", "7", vm):
            cmdline = self._run_ok(vm, "cat /proc/cmdline", verdict="HANG")
            entry = jump_back_entry(cmdline)
            if not entry:
                raise FlowStop("KEXEC_ERROR", "B's command line has no kexec_jump_back_entry=", [cmdline])
            self.entry = entry
            vmcore = self.rec.run(vm.console, "ls -l /proc/vmcore", self.timeouts["command"])
            if vmcore.status != 0:
                dmesg = self.rec.run(vm.console, "dmesg | grep -i -E 'vmcore|PT_NOTE|elfcorehdr'", self.timeouts["command"])
                raise FlowStop("KEXEC_ERROR", "no /proc/vmcore in kernel B", [vmcore.output, *dmesg.output.splitlines()])
            self._run_ok(vm, f"mount -t ext2 {disk} /mnt", verdict="CHECK_FAILED")
            self._run_ok(vm, "time cp /proc/vmcore /mnt/dump.elf", "save")
            self._run_ok(vm, f"echo {entry} > /mnt/kexec_jump_back_entry && ls -l /mnt && umount /mnt && sync",
                         verdict="CHECK_FAILED")
        with self.rec.step("power-off", "Shut down (reboot -f; QEMU exits with -no-reboot)", "7", vm):
            vm.console.send_line("reboot -f")
            self.rec.note("reboot -f")
            try:
                vm.console.expect([pexpect.EOF], self.timeouts["power-off"], "QEMU exit")
            except ConsoleTimeout as e:
                raise stop_for_console_failure(vm, e, self._text(vm)) from None
            exit_info = vm.wait_exit(self.timeouts["power-off"])
            if exit_info.triple_fault:
                raise stop_for_console_failure(vm, ConsoleEOF("power-off", vm.console.last_lines()), self._text(vm))

    def phase_c(self, vm: QemuVM) -> None:
        disk = self.machine.guest_disk
        with self.rec.step("boot-C", "Boot kernel C on the same disk", "8", vm):
            self._wait_ready(vm, "C")
        with self.rec.step("load-image", "Load A's image with kexec -l --args-none --entry=<jump-back entry>", "9", vm):
            self._run_ok(vm, f"mount -t ext2 {disk} /mnt && ls -l /mnt && cat /mnt/kexec_jump_back_entry", verdict="CHECK_FAILED")
            if self.quirks["iomem-filter"]:
                self._run_ok(vm, "kj-iomem-filter on")
            try:
                self._run_ok(vm, f"{self._kexec()} -l --args-none --entry=$(cat /mnt/kexec_jump_back_entry) /mnt/dump.elf", "load")
            finally:
                if self.quirks["iomem-filter"] and vm.running():
                    self.rec.run(vm.console, "kj-iomem-filter off", self.timeouts["command"])
            self._run_ok(vm, "umount /mnt", verdict="CHECK_FAILED")
        with self.rec.step("jump-back", "kexec -e in C: jump back to kernel A", "10", vm):
            # Log interrupts too while A resumes: a triple fault then shows its #GP/#DF
            # with the registers (GDT=...) in the cpu_reset log. Off again once A is back.
            vm.monitor.hmp("log cpu_reset,int")
            self.rec.note("QMP human-monitor-command: log cpu_reset,int")
            vm.console.send_line("kexec -x -e")
            self.rec.note("kexec -x -e")
            self.wait_for_a(vm)

    def wait_for_a(self, vm: QemuVM) -> None:
        """A is back when its shell prints the marker of the `kexec -e` it ran before the jump."""
        what = "A's shell returning from its kexec -e"
        try:
            idx = vm.console.expect([self.jump_marker, PANIC_RE.pattern], self.timeouts["jump"], what)
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self._text(vm)) from None
        if idx == 1:
            try:  # let the panic finish printing before judging
                vm.console.expect([r"end Kernel panic|Rebooting in", pexpect.EOF, pexpect.TIMEOUT], 5, "end of panic")
            except Exception:
                pass
            raise FlowStop("PANIC", "kernel A panicked after the jump back", panic_lines(self._text(vm)))
        vm.monitor.hmp("log cpu_reset")
        status = int(re.search(r":(\d+)>", vm.console.match_text).group(1))
        self.rec.note("(A's shell) kexec -e returned", vm.console.match_text, status)
        if status != 0 and not self.quirks["ignore-kexec-e-status"]:
            raise FlowStop("KEXEC_ERROR", f"kexec -e in A returned {status} after the resume",
                           kexec_error_lines(self._text(vm)) or [vm.console.match_text])

    def phase_resumed(self, vm: QemuVM) -> None:
        with self.rec.step("verify-A", "Check A's state after resume", "-", vm):
            checks = self.verify(vm)
            self.rec.result.checks.extend(checks)
            bad = [c for c in checks if not c.ok]
            if bad:
                raise FlowStop("CHECK_FAILED", ", ".join(c.name for c in bad) + " failed",
                               [f"{c.name}: {c.detail}" for c in bad])
        self._snapshot(vm, "A-resumed", "Memory snapshot of A after resume")

    def verify(self, vm: QemuVM) -> list[Check]:
        timeout = self.timeouts["command"]
        try:
            out = self.rec.run(vm.console, "kj-proof-check", timeout).output
            cmdline = self.rec.run(vm.console, "cat /proc/cmdline", timeout).output
            disk = self.rec.run(vm.console, f"mount -t ext2 {self.machine.guest_disk} /mnt && ls /mnt && umount /mnt", timeout)
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self._text(vm)) from None
        checks = [Check(name, ok, detail) for name, ok, detail in parse_checks(out)]
        if not checks:
            checks.append(Check("proof-check-ran", False, out[-500:] or "kj-proof-check printed nothing"))
        checks.append(Check("kernel-is-A", "kjlab.role=A" in cmdline, cmdline.strip()))
        checks.append(Check("disk-after-resume", disk.status == 0 and "dump.elf" in disk.output,
                            disk.output.strip() or f"exit {disk.status}"))
        panics = panic_lines(self._text(vm))
        checks.append(Check("no-panic", not panics, "; ".join(panics) or "no panic or oops on the console"))
        return checks
