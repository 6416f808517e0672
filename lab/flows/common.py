"""What every flow does with kernels A, B and C: boot, load, jump, save, check.

A flow class subclasses FlowContext and strings these pieces together as named steps.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from ..errors import ConsoleEOF, ConsoleTimeout
from ..memcheck import SentinelPlan, run_token
from ..snapshots import PhysImage
from ..qemu_cmdline import BootFiles
from ..results import Check
from ..scenario import Scenario
from ..verdict import PANIC_RE, kexec_error_lines, panic_lines, parse_checks
from ..vm import QemuVM
from .base import FlowStop, Recorder, step_console_text, stop_for_console_failure

log = logging.getLogger(__name__)

DEFAULT_TIMEOUTS = {
    "boot": 120.0,
    "command": 60.0,
    "load": 180.0,
    "save": 600.0,
    "jump": 120.0,
    "power-off": 60.0,
}
READY_RE = r"KJLAB-READY role={role}\b"


@dataclass(frozen=True)
class FlowArtifacts:
    kernel: Path  # kernels B and C (and A unless the scenario builds A apart)
    kernel_a: Path
    initrd_a: Path  # carries /boot/bzImage and /boot/rootfsB.gz for kernel B
    initrd_c: Path
    disk: Path


class FlowContext:
    # The reason given with a PASS: what held.
    pass_reason = "kernel A resumed and every check held"

    def __init__(self, scenario: Scenario, art: FlowArtifacts, run_dir: Path, sock_dir: Path,
                 rec: Recorder, accel: str) -> None:
        self.sc, self.art, self.run_dir, self.sock_dir, self.rec, self.accel = scenario, art, run_dir, sock_dir, rec, accel
        self.quirks = scenario.quirks
        self.timeouts = {**DEFAULT_TIMEOUTS, **scenario.flow.timeouts}
        self.disk_dev = scenario.machine.guest_disk
        self.plan = SentinelPlan(run_token(rec.result.run_id), seed=0x5EED, pages=scenario.flow.sentinel_pages)
        rec.result.memory["sentinel_plan"] = {"token": f"0x{self.plan.token:016x}", "seed": self.plan.seed,
                                              "pages_per_region": self.plan.pages}

    def run(self) -> None:
        raise NotImplementedError

    # -- machines -------------------------------------------------------------------------

    def vm(self, name: str, append: str, initrd: Path, kernel: Path | None = None, memory_mib: int | None = None) -> QemuVM:
        files = BootFiles(
            kernel=kernel or self.art.kernel, initrd=initrd, append=append, disk=self.art.disk,
            serial_socket=self.sock_dir / f"serial-{name}.sock", qmp_socket=self.sock_dir / f"qmp-{name}.sock",
            cpu_reset_log=self.run_dir / f"cpu-reset-{name}.log",
        )
        spec = self.sc.machine if memory_mib is None else self.sc.machine.with_overrides(memory_mib=memory_mib)
        vm = QemuVM(name, spec, files, self.accel, self.run_dir)
        self.rec.result.artifacts.update({
            f"console {name}": vm.console_log.name, f"QEMU log {name}": vm.stderr_log.name,
            f"cpu_reset log {name}": files.cpu_reset_log.name, "QMP log": vm.qmp_log.name,
        })
        return vm

    def vm_a(self) -> QemuVM:
        flow = self.sc.flow
        append = "console=ttyS0 loglevel=7 kjlab.role=A"
        append += f" mem={flow.a_mem}" if flow.a_mem else ""
        append += f" {flow.a_append}" if flow.a_append else ""
        if flow.a_reserves_window:
            lo, hi = flow.b_window
            append += f" memmap={(hi + 1 - lo) >> 10}K${lo >> 10}K"
        return self.vm("A-B", append, self.art.initrd_a, kernel=self.art.kernel_a)

    # -- console helpers ------------------------------------------------------------------

    def text(self, vm: QemuVM) -> str:
        assert self.rec.current is not None
        return step_console_text(vm, self.rec.current)

    def run_ok(self, vm: QemuVM, command: str, timeout_key: str = "command", verdict: str = "KEXEC_ERROR") -> str:
        """Run a command that must succeed; a failure ends the flow with its output as evidence."""
        try:
            result = self.rec.run(vm.console, command, self.timeouts[timeout_key])
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self.text(vm)) from None
        if result.status != 0:
            evidence = kexec_error_lines(result.output) or result.output.splitlines()[-15:]
            raise FlowStop(verdict, f"`{command}` exited {result.status}", evidence)
        return result.output

    def wait_ready(self, vm: QemuVM, role: str) -> None:
        self.expect_or_stop(vm, READY_RE.format(role=role), f"kernel {role}'s init", "boot")
        self.run_ok(vm, "uname -r; cat /proc/cmdline", verdict="HANG")

    def expect_or_stop(self, vm: QemuVM, pattern: str, what: str, timeout_key: str) -> None:
        """Wait for `pattern`; a panic, a triple fault or a hang on the way ends the flow."""
        try:
            idx = vm.console.expect([pattern, PANIC_RE.pattern], self.timeouts[timeout_key], what)
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self.text(vm)) from None
        if idx == 1:
            try:  # let the panic finish printing before judging
                vm.console.expect([r"end Kernel panic", pexpect.EOF, pexpect.TIMEOUT], 3, "end of panic")
            except Exception:
                pass
            raise FlowStop("PANIC", f"kernel panic while waiting for {what}", panic_lines(self.text(vm)))

    def wait_marker(self, vm: QemuVM, marker: str, what: str, timeout_key: str = "jump") -> int:
        """Wait for a command's end marker; returns its exit status."""
        self.expect_or_stop(vm, marker, what, timeout_key)
        found = re.search(r":(\d+)>", vm.console.match_text)
        assert found, "the marker pattern always holds the status"
        return int(found.group(1))

    def jump_returned(self, vm: QemuVM, marker: str, who: str) -> None:
        """`who`'s shell printed the marker of the `kexec -e` it ran before it was left."""
        status = self.wait_marker(vm, marker, f"{who}'s shell returning from its kexec -e")
        self.rec.note(f"({who}'s shell) kexec -e returned", vm.console.match_text, status)
        if status != 0 and not self.quirks["ignore-kexec-e-status"]:
            raise FlowStop("KEXEC_ERROR", f"kexec -e in {who} returned {status} after the jump back",
                           kexec_error_lines(self.text(vm)) or [vm.console.match_text])

    def snapshot(self, vm: QemuVM, name: str, title: str) -> Path:
        with self.rec.step(f"snapshot-{name}", title, "-", vm):
            path = self.run_dir / f"snapshot-{name}.elf"
            t0 = time.monotonic()
            vm.monitor.cmd("stop")
            try:
                vm.monitor.cmd("dump-guest-memory", timeout=300, paging=False, protocol=f"file:{path}")
            finally:
                vm.monitor.cmd("cont")
            size = path.stat().st_size
            self.rec.note(f"QMP stop; dump-guest-memory file:{path.name}; cont", f"{size} bytes", 0, time.monotonic() - t0)
            self.rec.result.snapshots.append({"name": name, "path": path.name, "bytes": size, "vm": vm.name, "taken": time.time()})
        return path

    # -- kernel A ---------------------------------------------------------------------------

    def boot_a(self, vm: QemuVM) -> None:
        with self.rec.step("boot-A", "Boot kernel A", "4", vm):
            self.wait_ready(vm, "A")
            self.check_cpus(vm)
        with self.rec.step("prepare-A", "Give A state that must survive (proof file, counter, sentinel pages)", "-", vm):
            self.run_ok(vm, f"kj-proof-setup {self.sc.flow.proof_kib}", verdict="CHECK_FAILED")
            if self.plan.pages:
                n, token, seed = self.plan.pages, f"0x{self.plan.token:x}", self.plan.seed
                self.run_ok(vm, f"kj-sentinel file /tmp/sentinel {n} {token} {seed}", verdict="CHECK_FAILED")
                marker = vm.console.start(f"kj-sentinel anon {n} {token} {seed} > /tmp/sentinel-anon.log 2>&1 </dev/null & true")
                self.wait_marker(vm, marker, "kj-sentinel in the background", "command")
                self.run_ok(vm, "for i in 1 2 3 4 5 6 7 8 9 10; do grep -q ready /tmp/sentinel-anon.log && break; "
                                "sleep 0.2; done; cat /tmp/sentinel-anon.log", verdict="CHECK_FAILED")

    def check_memory(self, before: Path, after: Path) -> None:
        """Host: A after the jump back against A before the jump (sentinels, changed ranges, map)."""
        from ..memcheck import check_resume, memory_view, sentinel_ranges

        with self.rec.step("check-memory", "Host: A's memory after resume against before the jump", "-", None):
            finding = check_resume(before, after, self.plan)
            changed = finding.data.pop("changed_ranges")
            mem = self.rec.result.memory
            mem["resume"] = finding.data
            bad = mem.get("image_bad_ranges", []) + finding.bad_ranges
            total = self.sc.machine.memory_mib << 20
            with PhysImage.open(before) as img:
                present = img.present_ranges()
            mem["map"] = memory_view(total, present, bad, changed,
                                     sentinel_ranges(before, self.plan) if self.plan.pages else [], self.sc.flow.b_window)
            self.rec.note("sentinel check", finding.data.get("sentinel_summary", "no sentinel pages planned"))
            if finding.problems:
                raise FlowStop("CHECK_FAILED", "A's memory after resume is not what it was before the jump",
                               finding.problems)

    def check_cpus(self, vm: QemuVM) -> None:
        """Every CPU of the machine is online in A: an SMP cell that silently runs on one
        CPU would test nothing of SMP."""
        out = self.run_ok(vm, "grep -c ^processor /proc/cpuinfo", verdict="CHECK_FAILED")
        online = int(out.strip().splitlines()[-1]) if out.strip() else 0
        if online != self.sc.machine.smp:
            raise FlowStop("CHECK_FAILED", f"the machine has {self.sc.machine.smp} CPUs, kernel A brought up {online}",
                           [out.strip()])

    def kexec(self) -> str:
        return "kexec -d -x" + (" -c" if self.quirks["kexec-syscall"] else "")

    def load_b(self, vm: QemuVM) -> None:
        with self.rec.step("load-B", "Load kernel B with kexec --load-preserve-context", "5", vm):
            if self.quirks["crash-note"]:
                self.run_ok(vm, "kj-crash-note")
            lo, hi = self.sc.flow.b_window
            if not self.quirks["wide-window"]:
                hi = min(hi, 0xFFFFFF)  # the 2008 command line
            memmap = " --pass-memmap-cmdline" if self.quirks["pass-memmap"] else ""
            self.with_iomem_filter(vm, lambda: self.run_ok(
                vm,
                f"{self.kexec()} --load-preserve-context /boot/bzImage --mem-min={lo:#x} --mem-max={hi:#x}"
                f" --initrd=/boot/rootfsB.gz{memmap} --append='console=ttyS0 loglevel=7 kjlab.role=B'",
                "load",
            ), window=True)

    def with_iomem_filter(self, vm: QemuVM, action, window: bool = False) -> None:  # type: ignore[no-untyped-def]
        if not self.quirks["iomem-filter"]:
            action()
            return
        lo, hi = self.sc.flow.b_window
        extra = f" {lo:08x}-{hi:08x}" if window and self.sc.flow.a_reserves_window else ""
        self.run_ok(vm, "kj-iomem-filter on" + extra)
        try:
            action()
        finally:
            if vm.running():
                self.rec.run(vm.console, "kj-iomem-filter off", self.timeouts["command"])

    def jump_to_b(self, vm: QemuVM, step: str = "jump-to-B", first: bool = True) -> str:
        """kexec -e in A; returns the marker A's shell prints when A is back."""
        with self.rec.step(step, "kexec -e: jump to kernel B", "6", vm):
            marker = vm.console.start("kexec -x -e")
            self.rec.note("kexec -x -e")
            if first:
                self.wait_ready(vm, "B")
                self.check_b_confined(vm)
        return marker

    def check_b_confined(self, vm: QemuVM) -> None:
        """B must see only its window; with all of RAM it overwrites A (facts, item 3)."""
        lo, hi = self.sc.flow.b_window
        out = self.run_ok(vm, "grep MemTotal /proc/meminfo", verdict="HANG")
        m = re.search(r"MemTotal:\s+(\d+) kB", out)
        window_kib = (hi + 1 - lo) >> 10
        if m and int(m.group(1)) > window_kib + 1024:  # + the low 640 KiB and rounding
            raise FlowStop("CHECK_FAILED", f"kernel B sees {int(m.group(1)) >> 10} MiB of RAM, more than its "
                           f"{window_kib >> 10} MiB window: it can overwrite A", [out.strip()])

    def verify_a(self, vm: QemuVM, step: str = "verify-A", disk: bool = True) -> list[Check]:
        with self.rec.step(step, "Check A's state", "-", vm):
            checks = self.a_checks(vm, disk)
            self.rec.result.checks.extend(checks)
            bad = [c for c in checks if not c.ok]
            if bad:
                raise FlowStop("CHECK_FAILED", ", ".join(c.name for c in bad) + " failed",
                               [f"{c.name}: {c.detail}" for c in bad])
        return checks

    def a_checks(self, vm: QemuVM, disk: bool) -> list[Check]:
        timeout = self.timeouts["command"]
        try:
            out = self.rec.run(vm.console, "kj-proof-check", timeout).output
            cmdline = self.rec.run(vm.console, "cat /proc/cmdline", timeout).output
            disk_res = (self.rec.run(vm.console, f"kj-mount-disk {self.disk_dev} && ls /mnt && umount /mnt", timeout)
                        if disk else None)
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise stop_for_console_failure(vm, e, self.text(vm)) from None
        checks = [Check(name, ok, detail) for name, ok, detail in parse_checks(out)]
        if not checks:
            checks.append(Check("proof-check-ran", False, out[-500:] or "kj-proof-check printed nothing"))
        checks.append(Check("kernel-is-A", "kjlab.role=A" in cmdline, cmdline.strip()))
        if disk_res is not None:
            checks.append(Check("disk-after-resume", disk_res.status == 0 and "lost+found" in disk_res.output,
                                disk_res.output.strip() or f"exit {disk_res.status}"))
        panics = panic_lines(self.text(vm))
        checks.append(Check("no-panic", not panics, "; ".join(panics) or "no panic or oops on the console"))
        return checks

    # -- kernel B ---------------------------------------------------------------------------

    def b_entry(self, vm: QemuVM) -> str:
        from ..verdict import jump_back_entry

        cmdline = self.run_ok(vm, "cat /proc/cmdline", verdict="HANG")
        entry = jump_back_entry(cmdline)
        if not entry:
            raise FlowStop("KEXEC_ERROR", "B's command line has no kexec_jump_back_entry=", [cmdline])
        return entry

    def b_jump_back(self, vm: QemuVM, entry: str, a_marker: str, step: str = "jump-back") -> str:
        """B loads the jump-back entry with kj-jump-back (kexec-tools' helper fails today,
        facts item 7) and jumps; A's shell returns. Returns B's marker (B's shell prints it
        if A ever jumps back into B)."""
        with self.rec.step(step, "B jumps straight back to A (kj-jump-back, kexec -e)", "-", vm):
            if self.quirks["own-jump-back-helper"]:
                self.run_ok(vm, f"kj-jump-back {entry}")
            else:
                self.run_ok(vm, f"{self.kexec()} --load-jump-back-helper --entry={entry}", "load")
            with self.interrupt_logging(vm):
                b_marker = vm.console.start("kexec -x -e")
                self.rec.note("kexec -x -e")
                self.jump_returned(vm, a_marker, "A")
        return b_marker

    @contextlib.contextmanager
    def interrupt_logging(self, vm: QemuVM) -> Iterator[None]:
        """Log interrupts too while a kernel is re-entered: a triple fault then shows its
        #GP/#DF with the registers (GDT=...) in the cpu_reset log. Off again afterwards."""
        vm.monitor.hmp("log cpu_reset,int")
        self.rec.note("QMP human-monitor-command: log cpu_reset,int")
        yield
        vm.monitor.hmp("log cpu_reset")

    def save_image_b(self, vm: QemuVM, name: str = "dump.elf", step: str = "save-image") -> str:
        """Step 7: B saves A's memory from /proc/vmcore (and the jump-back entry) to the disk."""
        with self.rec.step(step, f"Save A's memory image from /proc/vmcore to the disk ({name})", "7", vm):
            entry = self.b_entry(vm)
            vmcore = self.rec.run(vm.console, "ls -l /proc/vmcore", self.timeouts["command"])
            if vmcore.status != 0:
                dmesg = self.rec.run(vm.console, "dmesg | grep -i -E 'vmcore|PT_NOTE|elfcorehdr'", self.timeouts["command"])
                raise FlowStop("KEXEC_ERROR", "no /proc/vmcore in kernel B", [vmcore.output, *dmesg.output.splitlines()])
            self.run_ok(vm, f"kj-mount-disk {self.disk_dev}", verdict="CHECK_FAILED")
            if self.sc.flow.save == "makedumpfile":
                level = self.sc.flow.dump_level
                self.run_ok(vm, f"time makedumpfile -E -d {level} -i /mnt/vmcoreinfo /proc/vmcore /mnt/{name}", "save")
            else:
                self.run_ok(vm, f"time cp /proc/vmcore /mnt/{name}", "save")
            self.run_ok(vm, f"echo {entry} > /mnt/kexec_jump_back_entry && ls -l /mnt && umount /mnt && sync",
                        verdict="CHECK_FAILED")
        return entry

    def power_off(self, vm: QemuVM) -> None:
        with self.rec.step("power-off", "Shut down (reboot -f; QEMU exits with -no-reboot)", "7", vm):
            vm.console.send_line("reboot -f")
            self.rec.note("reboot -f")
            try:
                vm.console.expect([pexpect.EOF], self.timeouts["power-off"], "QEMU exit")
            except ConsoleTimeout as e:
                raise stop_for_console_failure(vm, e, self.text(vm)) from None
            exit_info = vm.wait_exit(self.timeouts["power-off"])
            if exit_info.triple_fault:
                raise stop_for_console_failure(vm, ConsoleEOF("power-off", vm.console.last_lines()), self.text(vm))
