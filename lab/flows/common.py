"""What every flow does with kernels A, B and C: boot, load, jump, save, check.

A flow class subclasses FlowContext and strings these pieces together as named steps.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pexpect

from ..cpu_state import cpu_lines, parse_info_registers, purgatory_symbols
from ..errors import ConsoleEOF, ConsoleTimeout, GuestError, KernelLogUnreadable
from ..memory.kernel_log import MemoryLog, read_kernel_log
from ..memory.checks import Finding, SentinelPlan, check_resume, memory_view, run_token, sentinel_ranges
from ..memory.image import PhysImage
from ..memory.ranges import format_range
from ..memory.record import HighmemZone, ResumeCheck, SentinelPlanRecord
from ..memory.resumed import ResumedMoment
from ..qemu_cmdline import BootFiles
from ..results import Check
from ..flow_kinds import DEFAULT_TIMEOUTS, FlowKind
from ..evidence import (
    PANIC_RE, cpu_count, cpuinfo_flags, format_cpu_list, highmem_zone, jump_mark, kernel_trouble, kexec_error_lines,
    kexec_load_entry, log_since_jump, panic_lines, parse_checks, parse_cpu_list, restarted,
)
from .. import kexec_commands as commands
from ..gdbstub import GdbError
from ..guest import Debugger, GuestFactory, GuestVM
from ..machines import cpu_flags_mismatch, ram_top
from ..symbols import SymbolMap
from ..vm import QemuVM
from ..verdict import Verdict
from .base import (
    FlowStop, Recorder, host_io_error, judge_with_memory_log, read_log, step_console_text, stop_for_console_failure,
)

if TYPE_CHECKING:
    from ..scenario import Scenario

log = logging.getLogger(__name__)

READY_RE = r"KJLAB-READY role={role}\b"
# Machines that ended with nothing (or not enough) said on the console: their memory is read
SILENT_ENDS = (Verdict.TRIPLE_FAULT, Verdict.GUEST_RESET)
PROOF_CHECKS = ("proof-file", "counter")
# The first function kernel_kexec() calls once machine_kexec() has returned from a
# preserve-context jump (kernel/kexec_core.c, 5.10-7.2): where A runs again.
A_RUNS_AGAIN = "syscore_resume"  # what guests/rootfs/bin/kj-proof-check must report


@dataclass(frozen=True)
class FlowArtifacts:
    kernel: Path  # kernels B and C (and A unless the scenario builds A apart)
    kernel_a: Path
    initrd_a: Path  # carries /boot/bzImage and /boot/rootfsB.gz for kernel B
    initrd_c: Path
    disk: Path
    system_map: Path | None = None  # of the kernel that runs as A, for symbols in evidence
    system_map_bc: Path | None = None  # of kernels B and C (the same file unless A is built apart)
    release_a: str = ""  # kernel A's release ("5.10.262"), for its per-kernel parameters


# Before 5.13 (commit f1d4d47c5851, "x86/setup: Always reserve the first 1M of RAM") an x86
# kernel reserves only `reservelow` (CONFIG_X86_RESERVE_LOW, 64K) of the low 1 MiB and hands
# the rest below 640K to the page allocator. B and C run there (memmap=640K@0K) and B's vmcore
# does not save it, so A resumed with B's and C's data in pages it still used. Seen on
# 5.10.262 (GDT fix on): A's VMCOREINFO note, allocated at 0x3a000, gone at the return; a
# page fault in __queue_work on 0xcfff3010, past A's mem=120M (C's memory), another in the
# timer interrupt, then silence. reservelow=640K (its maximum) keeps A out of there, as
# 5.13 on does by itself.
LOW_MEMORY_RESERVED_FROM = (5, 13)


def a_low_memory_params(release: str) -> str:
    """Kernel A's extra parameters for its release: reservelow=640K before 5.13."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if m and (int(m.group(1)), int(m.group(2))) < LOW_MEMORY_RESERVED_FROM:
        return "reservelow=640K"
    return ""


# Called with kernel A's live machine once A is back and its checks held (the pytest
# plugin's tests run there); the run goes on when it returns.
ResumedHook = Callable[[GuestVM, Recorder], None]


class FlowContext:
    kind: FlowKind  # its name and needs, from lab.flow_kinds (the model's one list of flows)
    summary = ""  # one line for `kjlab list`
    hands_over_resumed_a = False  # the flow calls on_resumed (lab.pytest_plugin)
    on_resumed: ResumedHook | None = None
    # The reason given with a PASS: what held.
    pass_reason = "kernel A resumed and every check held"

    def __init__(self, scenario: Scenario, art: FlowArtifacts, run_dir: Path, sock_dir: Path,
                 rec: Recorder, accel: str, guests: GuestFactory = QemuVM) -> None:
        """guests: how the flow makes its machines (QEMU; a test gives a replay of a recorded run)."""
        self.sc, self.art, self.run_dir, self.sock_dir, self.rec, self.accel = scenario, art, run_dir, sock_dir, rec, accel
        self.guests = guests
        self.quirks = scenario.quirks
        self.timeouts = {**DEFAULT_TIMEOUTS, **scenario.flow.timeouts}
        self.disk_dev = scenario.machine.guest_disk
        self.jumps_out = 0  # A's jumps so far; each marks A's kernel log (lab.evidence.jump_mark)
        self.b_entry_address: int | None = None  # where the jump into B starts (kexec -d)
        self.return_entry: int | None = None  # A's jump-back entry, as C's kexec -d loaded it
        self.return_snapshot: Path | None = None  # A's memory when it got control back
        self.a_running: ResumedMoment | None = None  # A's memory when A's own code runs again
        self.a_cmdline = ""  # kernel A's command line (vm_a)
        self.machines: list[GuestVM] = []  # every machine the flow started
        self.a_console_log: Path | None = None
        self.image_crc32 = 0  # of the image as the host read it after B saved it (zlib's CRC-32)
        self.symbols = (SymbolMap.load(art.system_map, arch=scenario.kernel.arch)
                        if art.system_map and art.system_map.is_file() else None)
        # The kernels that may be in a guest's memory, A's first (lab.memory.kernel_log)
        self.system_maps = [p for p in dict.fromkeys((art.system_map, art.system_map_bc)) if p and p.is_file()]
        self.silent_dumps = 0
        self.highmem: tuple[int, int] | None = None  # A's HighMem zone, from its boot log (note_highmem)
        self.plan = SentinelPlan(run_token(rec.result.run_id), seed=0x5EED, pages=scenario.flow.sentinel_pages)
        self.proof_seed = self.plan.token % 0xFFFFFFFF + 1  # kj-proof's stream: per run, never 0
        rec.memory(replace(rec.result.memory, sentinel_plan=SentinelPlanRecord(
            token=f"0x{self.plan.token:016x}", seed=self.plan.seed, pages_per_region=self.plan.pages)))

    def run(self) -> None:
        raise NotImplementedError

    def killed_from_outside(self) -> FlowStop | None:
        """A machine whose QEMU was killed by a signal from outside the lab: whatever the
        flow made of its end (a reset, a hang), that is no verdict on the kernel."""
        for vm in self.machines:
            signal_name = vm.killed_by()
            if signal_name is not None:
                return FlowStop(Verdict.QEMU_KILLED, f"QEMU of machine {vm.name} was killed by {signal_name} from "
                                "outside the lab (the OOM killer, an operator): no verdict on the kernel",
                                [f"QEMU {vm.name}: ended by {signal_name}, no SHUTDOWN from its guest",
                                 f"QEMU log: {vm.stderr_log.name}"])
        return None

    @property
    def proof_args(self) -> str:
        """kj-proof-setup's and kj-proof-check's arguments: the proof file's size and seed."""
        return f"{self.sc.flow.proof_kib} {self.proof_seed:#x}"

    # -- machines -------------------------------------------------------------------------

    def vm(self, name: str, append: str, initrd: Path, kernel: Path | None = None, memory_mib: int | None = None,
           swap_disk: Path | None = None) -> GuestVM:
        files = BootFiles(
            kernel=kernel or self.art.kernel, initrd=initrd, append=append, disk=self.art.disk,
            serial_socket=self.sock_dir / f"serial-{name}.sock", qmp_socket=self.sock_dir / f"qmp-{name}.sock",
            cpu_reset_log=self.run_dir / f"cpu-reset-{name}.log", gdb_socket=self.sock_dir / f"gdb-{name}.sock",
            swap_disk=swap_disk,
        )
        spec = self.sc.machine if memory_mib is None else self.sc.machine.with_overrides(memory_mib=memory_mib)
        vm = self.guests(name, spec, files, self.accel, self.run_dir)
        self.machines.append(vm)
        for label, path in ((f"console {name}", vm.console_log), (f"QEMU log {name}", vm.stderr_log),
                            (f"cpu_reset log {name}", files.cpu_reset_log), ("QMP log", vm.qmp_log)):
            self.rec.artifact(label, path)
        return vm

    def vm_a(self, name: str = "A-B", more_append: str = "", swap_disk: Path | None = None) -> GuestVM:
        flow = self.sc.flow
        append = "console=ttyS0 loglevel=7 kjlab.role=A"
        append += f" mem={flow.a_mem}" if flow.a_mem else ""
        low = a_low_memory_params(self.art.release_a)
        append += f" {low}" if low else ""
        append += f" {flow.a_append}" if flow.a_append else ""
        if flow.a_reserves_window:
            lo, hi = flow.b_window
            append += f" memmap={(hi + 1 - lo) >> 10}K${lo >> 10}K"
        append += f" {more_append}" if more_append else ""
        self.a_cmdline = append
        vm = self.vm(name, append, self.art.initrd_a, kernel=self.art.kernel_a, swap_disk=swap_disk)
        self.a_console_log = vm.console_log  # A's boot log comes first in it (its e820 map)
        return vm

    # -- console helpers ------------------------------------------------------------------

    def text(self, vm: GuestVM) -> str:
        assert self.rec.current is not None
        return step_console_text(vm, self.rec.current)

    def run_ok(self, vm: GuestVM, command: str, timeout_key: str = "command", verdict: Verdict = Verdict.KEXEC_ERROR) -> str:
        """Run a command that must succeed; a failure ends the flow with its output as evidence."""
        try:
            result = self.rec.run(vm.console, command, self.timeouts[timeout_key])
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise self.console_stop(vm, e) from None
        if result.status != 0:
            io_error = host_io_error(vm)
            if io_error is not None:
                raise io_error
            evidence = kexec_error_lines(result.output) or result.output.splitlines()[-15:]
            raise FlowStop(verdict, f"`{command}` exited {result.status}", evidence)
        return result.output

    def console_stop(self, vm: GuestVM, err: Exception) -> FlowStop:
        """The verdict for a console that timed out or closed (lab.flows.base). A kernel that
        died with its console suspended or silenced leaves its last words in its log, not on
        the serial line, so a guest that died silently has its memory dumped and its
        kernel's log read from it: one still there but no longer answering (HANG), and one
        whose machine ended in a triple fault or a reset (QEMU holds it, lab.vm)."""
        stop = stop_for_console_failure(vm, err, self.text(vm))
        if stop.verdict is Verdict.HANG and vm.running():
            why = "the guest stopped answering: QMP stop; dump-guest-memory"
            stop = FlowStop(stop.verdict, stop.reason, [*stop.evidence, *self.cpus_of_hung_guest(vm)])
        elif stop.verdict in SILENT_ENDS and vm.halted():
            why = f"the machine ended ({stop.verdict.value}), QEMU held it: dump-guest-memory"
        else:
            return stop
        mlog = self.memory_log_of_silent_guest(vm, why)
        return judge_with_memory_log(stop, mlog, self.jumps_out) if mlog else stop

    def cpus_of_hung_guest(self, vm: GuestVM) -> list[str]:
        """Stop the guest and say where each CPU is (lab.cpu_state): a hang's only witness
        besides memory. [] (and a note) when QEMU cannot tell."""
        try:
            vm.monitor.cmd("stop")
            registers = vm.monitor.hmp("info registers -a")
        except GuestError as e:
            self.rec.note("CPUs of the hung guest: not read", str(e))
            return []
        cpus = parse_info_registers(registers)
        console = read_log(vm.console_log)
        return ["-- CPUs (QEMU info registers, guest stopped) --", *cpu_lines(cpus, purgatory_symbols(console))]

    def memory_log_of_silent_guest(self, vm: GuestVM, why: str) -> MemoryLog | None:
        """Stop the guest, dump its memory and read the kernel log from it; None (and a
        note saying why) when that cannot be done. The guest stays stopped: it is done."""
        self.silent_dumps += 1
        step = self.rec.current.name if self.rec.current else "run"
        name = f"silent-{step}" + (f"-{self.silent_dumps}" if self.silent_dumps > 1 else "")
        try:
            vm.monitor.cmd("stop")
            snapshot = self.dump_memory(vm, name, why)
        except (GuestError, OSError) as e:
            self.rec.note("memory of the silent guest: not dumped", str(e))
            return None
        return self.kernel_log_from(snapshot, name)

    def kernel_log_from(self, snapshot: Path, name: str) -> MemoryLog | None:
        """The log of the kernel in `snapshot`, recorded (text and pages) for the report."""
        t0 = time.monotonic()
        try:
            mlog = read_kernel_log(snapshot, self.system_maps, self.run_dir / f"kernel-log-{name}.elf",
                                   self.sc.kernel.arch)
        except (KernelLogUnreadable, OSError) as e:
            self.rec.note(f"kernel log from {snapshot.name}: not read", str(e), None, time.monotonic() - t0)
            return None
        text_path = self.run_dir / f"kernel-log-{name}.txt"
        text_path.write_text(mlog.text)
        self.rec.kernel_log(name, mlog, text_path)
        self.rec.note(f"vmcore-dmesg {mlog.pages.name} (the log's pages of {snapshot.name})",
                      "\n".join(mlog.lines[-5:]), 0, time.monotonic() - t0)
        return mlog

    def wait_ready(self, vm: GuestVM, role: str) -> None:
        self.expect_or_stop(vm, READY_RE.format(role=role), f"kernel {role}'s init", "boot")
        self.run_ok(vm, "uname -r; cat /proc/cmdline", verdict=Verdict.HANG)

    def expect_or_stop(self, vm: GuestVM, pattern: str, what: str, timeout_key: str) -> None:
        """Wait for `pattern`; a panic, a triple fault or a hang on the way ends the flow."""
        try:
            idx = vm.console.expect([pattern, PANIC_RE.pattern], self.timeouts[timeout_key], what)
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise self.console_stop(vm, e) from None
        if idx == 1:
            try:  # let the panic finish printing before judging
                vm.console.expect([r"end Kernel panic", pexpect.EOF, pexpect.TIMEOUT], 3, "end of panic")
            except Exception:
                pass
            raise FlowStop(Verdict.PANIC, f"kernel panic while waiting for {what}", panic_lines(self.text(vm)))

    def wait_marker(self, vm: GuestVM, marker: str, what: str, timeout_key: str = "jump") -> int:
        """Wait for a command's end marker; returns its exit status."""
        self.expect_or_stop(vm, marker, what, timeout_key)
        found = re.search(r":(\d+)>", vm.console.match_text)
        assert found, "the marker pattern always holds the status"
        return int(found.group(1))

    def jump_returned(self, vm: GuestVM, marker: str, who: str) -> None:
        """`who`'s shell printed the marker of the `kexec -e` it ran before it was left."""
        status = self.wait_marker(vm, marker, f"{who}'s shell returning from its kexec -e")
        self.rec.note(f"({who}'s shell) kexec -e returned", vm.console.match_text, status)
        if status != 0 and not self.quirks["ignore-kexec-e-status"]:
            raise FlowStop(Verdict.KEXEC_ERROR, f"kexec -e in {who} returned {status} after the jump back",
                           kexec_error_lines(self.text(vm)) or [vm.console.match_text])

    def snapshot(self, vm: GuestVM, name: str, title: str) -> Path:
        with self.rec.step(f"snapshot-{name}", title, "-", vm):
            vm.monitor.cmd("stop")
            try:
                return self.dump_memory(vm, name, "QMP stop; dump-guest-memory; cont")
            finally:
                vm.monitor.cmd("cont")

    def dump_memory(self, vm: GuestVM, name: str, how: str) -> Path:
        """QMP dump-guest-memory of a stopped guest into snapshot-<name>.elf: A's RAM only
        (mem=), as everything the lab proves lies there; RAM above it is neither A's nor
        read, and leaving it out halves a 120-of-256 MiB dump."""
        path = self.run_dir / f"snapshot-{name}.elf"
        t0 = time.monotonic()
        only_a: dict[str, int] = {}
        if self.sc.a_ram_end < ram_top(self.sc.machine):  # RAM above 4 GiB ends past memory_mib
            only_a = {"begin": 0, "length": self.sc.a_ram_end}
        vm.monitor.cmd("dump-guest-memory", timeout=300, paging=False, protocol=f"file:{path}", **only_a)
        self.rec.note(f"{how}: file:{path.name}", f"{path.stat().st_size} bytes", 0, time.monotonic() - t0)
        self.rec.snapshot(name, path, vm.name)
        return path

    # -- the exact moments of a jump (GDB on QEMU's gdbstub) ----------------------------------

    def jump_capturing(self, vm: GuestVM, entry: int | None, name: str, send: Callable[[], str],
                       then_a_runs: bool = False) -> tuple[str, Path | None]:
        """Send a jump (`send` returns the console marker) with the guest set to stop at
        `entry`, the first instruction the jump runs, and snapshot the memory there, before
        the kernel jumped into runs. Returns (marker, snapshot or None if not reached).
        then_a_runs: the jump goes back into A; the guest stops once more where A runs
        again (capture_a_running) for the last leg of the proof."""
        gdb = vm.debugger(self.run_dir / f"gdb-{vm.name}.log") if entry is not None else None
        if entry is None or gdb is None:
            why = "no entry address from kexec -d" if entry is None else "no gdbstub"
            self.rec.note(f"{name}: {why}, moment not captured")
            return send(), None
        self.rec.artifact(f"GDB log {vm.name}", gdb.log_path)
        t0 = time.monotonic()
        try:
            gdb.attach()
            bp = gdb.break_at(entry)
            gdb.resume()
        except GdbError as e:
            gdb.close()
            self.rec.note(f"{name}: GDB could not set the breakpoint", str(e))
            return send(), None
        arch = self.sc.machine.arch.info
        self.rec.note(f"GDB: attach, hbreak *{entry:#x} if {arch.jump_entry_if}, continue", "", 0, time.monotonic() - t0)
        marker = send()
        path = None
        try:
            stop = gdb.wait_stopped(self.timeouts["jump"], alive=vm.running)
            if stop.get("reason") == "breakpoint-hit":
                path = self.dump_memory(vm, name, f"stopped at {entry:#x} (GDB hbreak, {arch.jump_entry_state}); "
                                                 "dump-guest-memory")
            else:
                self.rec.note(f"{name}: the guest stopped for another reason", str(stop))
            gdb.delete(bp)
            if then_a_runs and path is not None:
                self.capture_a_running(vm, gdb, entry)
        except (TimeoutError, GdbError) as e:
            self.rec.note(f"{name}: not captured", str(e))
        finally:
            t0 = time.monotonic()
            gdb.detach()  # QEMU resumes the guest
            self.rec.note("GDB: delete the breakpoint, detach", "", 0, time.monotonic() - t0)
        return marker, path

    def capture_a_running(self, vm: GuestVM, gdb: Debugger, entry: int) -> None:
        """The guest, stopped at A's jump-back entry, runs on to A_RUNS_AGAIN, the first
        function A calls once machine_kexec() has returned from relocate_kernel (paging on,
        interrupts off, one CPU; after fix 0005's restore, before any device resumes): its
        memory there is A's own again, B's window swapped back (lab.memory.resumed)."""
        at = self.symbols.address_of(A_RUNS_AGAIN) if self.symbols else None
        if at is None:
            self.rec.note(f"A-running: no {A_RUNS_AGAIN} in A's System.map, moment not captured")
            return
        t0 = time.monotonic()
        entry_sp = gdb.register("sp")  # the peer's stack: A's jump-back code pushes on it once
        bp = gdb.break_at_kernel(at)
        gdb.resume()
        self.rec.note(f"GDB: hbreak *{at:#x} ({A_RUNS_AGAIN}), continue", f"SP at the jump-back entry {entry_sp:#x}", 0,
                      time.monotonic() - t0)
        try:
            stop = gdb.wait_stopped(self.timeouts["jump"], alive=vm.running)
        except (TimeoutError, GdbError) as e:  # A died on its way back (a triple fault): the flow says how
            self.rec.note("A-running: not captured", str(e))
            return
        if stop.get("reason") != "breakpoint-hit":
            self.rec.note("A-running: the guest stopped for another reason", str(stop))
            return
        sp = gdb.register("sp")
        path = self.dump_memory(vm, "A-running", f"stopped at {at:#x} ({A_RUNS_AGAIN}: A runs again, paging on, "
                                                 f"SP {sp:#x}); dump-guest-memory")
        gdb.delete(bp)
        self.a_running = ResumedMoment(path, sp, entry & ~0xFFF, A_RUNS_AGAIN, entry_sp)

    def a_jump_out(self, vm: GuestVM) -> str:
        """A writes the jump's mark into its kernel log, then runs kexec -e; returns the
        marker A's shell prints when it is back."""
        self.jumps_out += 1
        self.run_ok(vm, f"echo '{jump_mark(self.jumps_out)}' > /dev/kmsg", verdict=Verdict.CHECK_FAILED)
        marker = vm.console.start("kexec -x -e")
        self.rec.note("kexec -x -e")
        return marker

    # -- kernel A ---------------------------------------------------------------------------

    def boot_a(self, vm: GuestVM) -> None:
        with self.rec.step("boot-A", "Boot kernel A", "4", vm):
            self.wait_ready(vm, "A")
            self.note_highmem(vm)
            self.check_cpus(vm)
        with self.rec.step("prepare-A", "Give A state that must survive (proof file, counter, sentinel pages)", "-", vm):
            self.run_ok(vm, f"kj-proof-setup {self.proof_args}", verdict=Verdict.CHECK_FAILED)
            if self.plan.pages:
                n, token, seed = self.plan.pages, f"0x{self.plan.token:x}", self.plan.seed
                self.run_ok(vm, f"kj-sentinel file /tmp/sentinel {n} {token} {seed}", verdict=Verdict.CHECK_FAILED)
                marker = vm.console.start(f"kj-sentinel anon {n} {token} {seed} > /tmp/sentinel-anon.log 2>&1 </dev/null & true")
                self.wait_marker(vm, marker, "kj-sentinel in the background", "command")
                self.run_ok(vm, "for i in 1 2 3 4 5 6 7 8 9 10; do grep -q ready /tmp/sentinel-anon.log && break; "
                                "sleep 0.2; done; cat /tmp/sentinel-anon.log", verdict=Verdict.CHECK_FAILED)
            for cpu in self.sc.flow.a_offline_cpus:  # as a user would, before the jump
                self.run_ok(vm, f"echo 0 > /sys/devices/system/cpu/cpu{cpu}/online && "
                                f"cat /sys/devices/system/cpu/online", verdict=Verdict.CHECK_FAILED)

    def note_highmem(self, vm: GuestVM) -> None:
        """Where A's HighMem zone lies, from A's boot log (its "Zone ranges"): an i386 kernel
        maps memory above it only for a moment (kmap), and a scenario about high memory
        wants A's sentinel pages there (flow.highmem_sentinels; lab.memory.checks)."""
        try:  # the whole log: "Zone ranges" comes early, maybe before the step began
            boot_log = vm.console_log.read_bytes().decode(errors="replace")
        except OSError:
            boot_log = ""
        zone = highmem_zone(boot_log)
        self.highmem = zone
        if zone is not None:
            self.rec.memory(replace(self.rec.result.memory,
                                    highmem_zone=HighmemZone(range=format_range(zone), bytes=zone[1] - zone[0])))
            self.rec.note("A's HighMem zone (boot log)", f"{format_range(zone)} ({(zone[1] - zone[0]) >> 20} MiB)")

    def check_memory(self, before: Path, after: Path) -> None:
        """Host: A after the jump back against A before the jump (sentinels, changed ranges, map)."""
        with self.rec.step("check-memory", "Host: A's memory after resume against before the jump", "-", None):
            finding = self.memory_map(before, after)
            if finding.problems:
                raise FlowStop(Verdict.CHECK_FAILED, "A's memory after resume is not what it was before the jump",
                               finding.problems)

    def memory_map(self, before: Path, after: Path,
                   proven: list[tuple[int, int]] | None = None) -> Finding[ResumeCheck]:
        """The report's map of A's memory and the sentinels' fate between two snapshots;
        `proven`: the pages the round-trip proof showed identical."""
        finding = check_resume(before, after, self.plan)
        self.rec.memory(replace(self.rec.result.memory, resume=finding.record))
        with PhysImage.open(before) as img:
            present = img.present_ranges()
        bad = list(self.rec.result.memory.image_bad_ranges or ()) + finding.bad_ranges
        mmap = memory_view(ram_top(self.sc.machine), present, bad, finding.changed_ranges,
                           sentinel_ranges(before, self.plan) if self.plan.pages else [],
                           self.sc.flow.b_window, proven=proven)
        self.rec.memory(replace(self.rec.result.memory, map=mmap))
        summary = finding.record.sentinel_summary
        self.rec.note("sentinel check", "no sentinel pages planned" if summary is None else summary)
        return finding

    def check_cpus(self, vm: GuestVM) -> None:
        """Every CPU of the machine is online in A: an SMP cell that silently runs on one
        CPU would test nothing of SMP."""
        out = self.run_ok(vm, "grep -c ^processor /proc/cpuinfo", verdict=Verdict.CHECK_FAILED)
        online = cpu_count(out)
        if online != self.sc.machine.smp:
            raise FlowStop(Verdict.CHECK_FAILED, f"the machine has {self.sc.machine.smp} CPUs, kernel A brought up {online}",
                           [out.strip()])
        wanted = self.sc.machine.cpu_flags
        if wanted:
            out = self.run_ok(vm, "grep -m1 ^flags /proc/cpuinfo", verdict=Verdict.CHECK_FAILED)
            flags = cpuinfo_flags(out)
            problems = (["no flags line in /proc/cpuinfo"] if flags is None
                        else cpu_flags_mismatch(wanted, flags))
            if problems:
                raise FlowStop(Verdict.CHECK_FAILED, f"the machine's CPU ({self.sc.machine.cpu}) is not what the "
                               "machine is there to test", problems + [out.strip()])
            self.rec.note("CPU flags (A's /proc/cpuinfo)", " ".join(wanted) + ": as the machine says")

    def load_b(self, vm: GuestVM, then: Callable[[], object] | None = None) -> None:
        """then: more the flow reads from A in this step, after the load."""
        with self.rec.step("load-B", "Load kernel B with kexec --load-preserve-context", "5", vm):
            if self.quirks["crash-note"]:
                self.run_ok(vm, "kj-crash-note")
            command = commands.load_b(self.quirks, self.sc.flow.b_window)
            output: list[str] = []
            self.with_iomem_filter(vm, lambda: output.append(self.run_ok(vm, command, "load")), window=True)
            self.b_entry_address = kexec_load_entry("".join(output))
            if then is not None:
                then()

    def with_iomem_filter(self, vm: GuestVM, action: Callable[[], object], window: bool = False) -> None:
        if not self.quirks["iomem-filter"]:
            action()
            return
        lo, hi = self.sc.flow.b_window
        extra = f" {lo:08x}-{hi:08x}" if window and self.sc.flow.a_reserves_window else ""
        self.run_ok(vm, "kj-iomem-filter on" + extra)
        # Not in a `finally`: a failed load ends the run, and a guest that stopped answering
        # has been stopped by the lab for its evidence (console_stop): a command sent to it
        # then waited out its whole timeout (300 s in a HighMem run).
        action()
        self.rec.run(vm.console, "kj-iomem-filter off", self.timeouts["command"])

    def jump_to_b(self, vm: GuestVM, step: str = "jump-to-B", first: bool = True) -> str:
        """kexec -e in A; returns the marker A's shell prints when A is back."""
        marker, _ = self._jump_to_b(vm, step, first, capture=False)
        return marker

    def jump_to_b_captured(self, vm: GuestVM) -> tuple[str, Path | None]:
        """kexec -e in A, the guest stopped at B's entry for the departure snapshot."""
        return self._jump_to_b(vm, "jump-to-B", True, capture=True)

    def _jump_to_b(self, vm: GuestVM, step: str, first: bool, capture: bool) -> tuple[str, Path | None]:
        departure = None
        with self.rec.step(step, "kexec -e: jump to kernel B", "6", vm):
            # Interrupts logged while B boots: a fault on the way (e.g. an offline CPU woken
            # in overwritten text) shows its vector and instruction pointer.
            with self.interrupt_logging(vm):
                if capture:
                    marker, departure = self.jump_capturing(vm, self.b_entry_address, "A-departure",
                                                            lambda: self.a_jump_out(vm))
                else:
                    marker = self.a_jump_out(vm)
                if first:
                    self.wait_ready(vm, "B")
            if first:
                self.check_b_confined(vm)
        return marker, departure

    def check_b_confined(self, vm: GuestVM) -> None:
        """B must see only its window; with all of RAM it overwrites A (facts, item 3)."""
        lo, hi = self.sc.flow.b_window
        out = self.run_ok(vm, "grep MemTotal /proc/meminfo", verdict=Verdict.HANG)
        m = re.search(r"MemTotal:\s+(\d+) kB", out)
        window_kib = (hi + 1 - lo) >> 10
        if m and int(m.group(1)) > window_kib + 1024:  # + the low 640 KiB and rounding
            raise FlowStop(Verdict.CHECK_FAILED, f"kernel B sees {int(m.group(1)) >> 10} MiB of RAM, more than its "
                           f"{window_kib >> 10} MiB window: it can overwrite A", [out.strip()])

    def verify_a(self, vm: GuestVM, step: str = "verify-A", disk: bool = True) -> list[Check]:
        """After A is back: its state, its CPUs and the kernel log of this resume. Every
        named check must report; one that is missing or unreadable fails. A WARNING, BUG,
        lockup or RCU stall in A's log after the jump is KERNEL_WARNING, an oops PANIC."""
        with self.rec.step(step, "Check A's state and the kernel log of this resume", "-", vm):
            if self.sc.flow.after_resume_command:  # test option: make A misbehave first
                try:
                    self.rec.run(vm.console, self.sc.flow.after_resume_command, self.timeouts["after-resume"])
                except (ConsoleTimeout, ConsoleEOF) as e:
                    raise self.console_stop(vm, e) from None
            checks, trouble = self.a_checks(vm, disk)
            self.rec.checks(checks)
            oops, trace = trouble
            if trace:
                verdict = Verdict.PANIC if oops else Verdict.KERNEL_WARNING
                raise FlowStop(verdict, f"A's kernel log after the jump back: {trace[0].strip()}", trace)
            bad = [c for c in checks if not c.ok]
            if bad:
                raise FlowStop(Verdict.CHECK_FAILED, ", ".join(c.name for c in bad) + " failed",
                               [f"{c.name}: {c.detail}" for c in bad])
        return checks

    def hand_over(self, vm: GuestVM) -> None:
        """Give the resumed A to the caller's own checks (on_resumed), in a step of its own."""
        if self.on_resumed is None:
            return
        with self.rec.step("user-checks", "The caller's own checks on the resumed kernel A", "-", vm):
            self.on_resumed(vm, self.rec)

    def a_checks(self, vm: GuestVM, disk: bool) -> tuple[list[Check], tuple[bool, list[str]]]:
        """A's checks, read with the kernel's console messages held back (dmesg -n 1), so
        no printk can split a line of the lab's command channel; the kernel log itself is
        read from dmesg, where nothing is lost."""
        timeout = self.timeouts["command"]
        try:
            self.rec.run(vm.console, "dmesg -n 1", timeout)
            try:
                disk_res = (self.rec.run(vm.console, f"kj-mount-disk {self.disk_dev} && ls /mnt && umount /mnt", timeout)
                            if disk else None)
                proof = self.rec.run(vm.console, f"kj-proof-check {self.proof_args}", timeout).output
                cmdline = self.rec.run(vm.console, "cat /proc/cmdline", timeout).output
                cpus = self.rec.run(vm.console, "grep -c ^processor /proc/cpuinfo", timeout).output
                dmesg = self.rec.run(vm.console, "dmesg", timeout).output
            finally:
                if vm.running():
                    self.rec.run(vm.console, "dmesg -n 7", timeout)
        except (ConsoleTimeout, ConsoleEOF) as e:
            raise self.console_stop(vm, e) from None
        reported = {name: (ok, detail) for name, ok, detail in parse_checks(proof)}
        checks = [Check(name, *reported.get(name, (False, f"kj-proof-check did not report it: {proof[-300:]!r}")))
                  for name in PROOF_CHECKS]
        checks.append(Check("kernel-is-A", "kjlab.role=A" in cmdline, cmdline.strip()))
        online = cpu_count(cpus)
        offline = self.sc.flow.a_offline_cpus
        wanted = self.sc.machine.smp - len(offline)
        checks.append(Check("cpus-online", online == wanted,
                            f"{online} of the machine's {self.sc.machine.smp} CPUs online after the jump back"
                            + (f" (expected {wanted}: CPU {', '.join(map(str, offline))} offlined in A before the jump)"
                               if offline else "")))
        if offline:  # the very CPUs: the ones A took offline stay so, the others are back
            listed = self.rec.run(vm.console, "cat /sys/devices/system/cpu/online", self.timeouts["command"]).output
            got = parse_cpu_list(listed)
            want = sorted(set(range(self.sc.machine.smp)) - set(offline))
            checks.append(Check("cpus-as-before", got == want,
                                f"online after the jump back: {listed.strip()!r}; before the jump: "
                                f"{format_cpu_list(want)!r}"))
        if disk_res is not None:
            checks.append(Check("disk-after-resume", disk_res.status == 0 and "lost+found" in disk_res.output,
                                disk_res.output.strip() or f"exit {disk_res.status}"))
        after = log_since_jump(dmesg, self.jumps_out)
        if after is None:
            checks.append(Check("resume-log", False, f"no '{jump_mark(self.jumps_out)}' in A's kernel log"))
            trouble: tuple[bool, list[str]] = (False, [])
        else:
            done = restarted(after)
            checks.append(Check("resume-log", done is not None,
                                done or f"no 'Restarting tasks ... done' after '{jump_mark(self.jumps_out)}'"))
            trouble = kernel_trouble(after)
            checks.append(Check("kernel-log-clean", not trouble[1],
                                trouble[1][0].strip() if trouble[1] else
                                f"no WARNING, BUG, oops, lockup or RCU stall in {len(after)} lines after the jump"))
        panics = panic_lines(self.text(vm))
        checks.append(Check("no-panic", not panics, "; ".join(panics) or "no panic or oops on the console"))
        return checks, trouble

    # -- kernel B ---------------------------------------------------------------------------

    def b_entry(self, vm: GuestVM) -> str:
        from ..evidence import jump_back_entry

        cmdline = self.run_ok(vm, "cat /proc/cmdline", verdict=Verdict.HANG)
        entry = jump_back_entry(cmdline)
        if not entry:
            raise FlowStop(Verdict.KEXEC_ERROR, "B's command line has no kexec_jump_back_entry=", [cmdline])
        return entry

    def b_jump_back(self, vm: GuestVM, entry: str, a_marker: str, step: str = "jump-back") -> str:
        """B loads the jump-back entry with kj-jump-back (kexec-tools' helper fails today,
        facts item 7) and jumps; A's shell returns. Returns B's marker (B's shell prints it
        if A ever jumps back into B)."""
        with self.rec.step(step, "B jumps straight back to A (kj-jump-back, kexec -e)", "-", vm):
            self.run_ok(vm, commands.load_jump_back(self.quirks, entry), "load")
            with self.interrupt_logging(vm):
                b_marker = vm.console.start("kexec -x -e")
                self.rec.note("kexec -x -e")
                self.jump_returned(vm, a_marker, "A")
        return b_marker

    @contextlib.contextmanager
    def interrupt_logging(self, vm: GuestVM) -> Iterator[None]:
        """Log interrupts too while a kernel is re-entered: a triple fault then shows its
        #GP/#DF with the registers (GDT=...) in the cpu_reset log. Off again afterwards."""
        vm.monitor.hmp("log cpu_reset,int")
        self.rec.note("QMP human-monitor-command: log cpu_reset,int")
        try:
            yield
        finally:
            if vm.running():
                vm.monitor.hmp("log cpu_reset")

    def save_image_b(self, vm: GuestVM, name: str = "dump.elf", step: str = "save-image") -> str:
        """Step 7: B saves A's memory from /proc/vmcore (and the jump-back entry) to the disk."""
        with self.rec.step(step, f"Save A's memory image from /proc/vmcore to the disk ({name})", "7", vm):
            entry = self.b_entry(vm)
            vmcore = self.rec.run(vm.console, "ls -l /proc/vmcore", self.timeouts["command"])
            if vmcore.status != 0:
                dmesg = self.rec.run(vm.console, "dmesg | grep -i -E 'vmcore|PT_NOTE|elfcorehdr'", self.timeouts["command"])
                raise FlowStop(Verdict.KEXEC_ERROR, "no /proc/vmcore in kernel B", [vmcore.output, *dmesg.output.splitlines()])
            self.run_ok(vm, f"kj-mount-disk {self.disk_dev}", verdict=Verdict.CHECK_FAILED)
            self.run_ok(vm, commands.save_image(self.sc.flow.save, self.sc.flow.dump_level, name), "save",
                        verdict=Verdict.SAVE_FAILED)
            for command in commands.after_save(self.sc.kernel.arch, self.quirks, name):
                self.run_ok(vm, command, verdict=Verdict.SAVE_FAILED)
            self.run_ok(vm, f"echo {entry} > /mnt/kexec_jump_back_entry && ls -l /mnt && umount /mnt && sync",
                        verdict=Verdict.CHECK_FAILED)
        return entry

    def power_off(self, vm: GuestVM) -> None:
        with self.rec.step("power-off", "Shut down (reboot -f; the machine ends)", "7", vm):
            vm.console.send_line("reboot -f")
            self.rec.note("reboot -f")
            try:
                vm.console.expect([pexpect.EOF], self.timeouts["power-off"], "the machine's end")
            except ConsoleTimeout as e:
                raise self.console_stop(vm, e) from None
            exit_info = vm.wait_exit(self.timeouts["power-off"])
            if exit_info.triple_fault:
                raise self.console_stop(vm, ConsoleEOF("power-off", vm.console.last_lines())) from None
