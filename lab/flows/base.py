"""Step bookkeeping shared by the flows: timing, commands, console offsets, and the
translation of what went wrong into a verdict with evidence."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import results as res
from ..console import CommandResult, Console, clean
from ..errors import ConsoleEOF, ConsoleTimeout
from ..results import Check, Command, RunResult, Step
from ..evidence import OOPS_RE, kexec_error_lines, log_since_jump, panic_lines, triple_fault_evidence
from ..memory.kernel_log import MemoryLog
from ..memory.record import MemoryRecord
from ..verdict import Verdict
from ..guest import GuestVM

log = logging.getLogger(__name__)


class FlowStop(Exception):
    """Ends a flow with a verdict (not an error of the lab): carries the evidence."""

    def __init__(self, verdict: Verdict, reason: str, evidence: list[str] | None = None) -> None:
        super().__init__(f"{verdict}: {reason}")
        self.verdict, self.reason, self.evidence = verdict, reason, evidence or []


class Recorder:
    """Keeps the RunResult current and on disk after every step."""

    def __init__(self, result: RunResult, run_dir: Path, on_step: Callable[[Step], None] | None = None) -> None:
        self.result, self.run_dir, self.on_step = result, run_dir, on_step
        self.current: Step | None = None
        self.current_vm: GuestVM | None = None

    def save(self) -> None:
        res.save(self.result, self.run_dir)

    @contextmanager
    def step(self, name: str, title: str, seed_step: str, vm: GuestVM | None) -> Iterator[Step]:
        step = Step(name=name, title=title, seed_step=seed_step, vm=vm.name if vm else "", started=time.time())
        if vm and vm.has_console:
            step.console_start = step.console_end = vm.console.offset()
        if vm:
            step.cpu_reset_start = step.cpu_reset_end = _size(vm.files.cpu_reset_log)
        self.result.steps.append(step)
        self.current, self.current_vm = step, vm
        log.debug("step %s: %s", name, title)
        if self.on_step:
            self.on_step(step)
        self.save()
        try:
            yield step
            if step.outcome == "running":  # a flow may have marked it failed and gone on
                step.outcome = "ok"
        except FlowStop as stop:
            step.outcome, step.message = "failed", stop.reason
            raise
        except (KeyboardInterrupt, SystemExit):
            step.outcome, step.message = "interrupted", "interrupted by signal"
            raise
        except Exception as e:
            step.outcome, step.message = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            step.ended = time.time()
            if vm and vm.has_console:
                step.console_end = vm.console.offset()
            if vm:
                step.cpu_reset_end = _size(vm.files.cpu_reset_log)
            if self.on_step:
                self.on_step(step)
            self.save()

    def run(self, console: Console, command: str, timeout: float = 60.0) -> CommandResult:
        """Run a guest command inside the current step, recording it (even on timeout)."""
        t0 = time.monotonic()
        try:
            result = console.run(command, timeout)
        except (ConsoleTimeout, ConsoleEOF) as e:
            self._record(Command(command, None, getattr(e, "last_lines", ""), time.monotonic() - t0))
            raise
        self._record(Command(command, result.status, result.output, result.seconds))
        return result

    def note(self, command: str, output: str = "", status: int | None = None, seconds: float = 0.0) -> None:
        """Record something sent that has no exit status of its own (kexec -e, reboot -f, QMP)."""
        self._record(Command(command, status, output, seconds))

    # -- the record's other parts: the flows and the runner write them only through these --

    def artifact(self, label: str, path: Path) -> None:
        """A file of the run directory worth linking from the report."""
        self.result.artifacts[label] = path.name

    def forget_artifact(self, label: str) -> None:
        self.result.artifacts.pop(label, None)

    def provenance(self, key: str, value: Any) -> None:
        self.result.provenance[key] = value

    def memory(self, record: MemoryRecord) -> None:
        """The run's memory findings (lab.memory.record), a finding added to what
        result.memory held: `rec.memory(replace(rec.result.memory, resume=...))`."""
        self.result.memory = record

    def snapshot(self, name: str, path: Path, vm: str) -> None:
        self.result.snapshots.append({"name": name, "path": path.name, "bytes": path.stat().st_size, "vm": vm,
                                      "taken": time.time()})

    def kernel_log(self, name: str, mlog: MemoryLog, text: Path) -> None:
        """A kernel log read from a memory snapshot: its text file and the small ELF of its
        pages stay in the run directory (the snapshot itself may be dropped later)."""
        self.result.kernel_logs.append({
            "name": name, "kernel": mlog.role, "release": mlog.release, "snapshot": mlog.snapshot.name,
            "text": text.name, "pages": mlog.pages.name, "system_map": str(mlog.system_map),
            "lines": len(mlog.lines), "step": self.current.name if self.current else "", "taken": time.time(),
        })
        self.artifact(f"kernel log {name} (read from memory)", text)
        self.artifact(f"kernel log pages {name} (ELF for vmcore-dmesg)", mlog.pages)
        self.save()

    def snapshot_deleted(self, name: str, why: str) -> None:
        for snap in self.result.snapshots:
            if snap["name"] == name:
                snap["deleted"] = why

    def checks(self, checks: list[Check]) -> None:
        self.result.checks.extend(checks)
        self.save()

    def _record(self, cmd: Command) -> None:
        assert self.current is not None
        self.current.commands.append(cmd)
        self.save()


def host_io_error(vm: GuestVM) -> FlowStop | None:
    """QEMU's BLOCK_IO_ERROR events: the host could not read or write the disk image
    (a full host disk): a lab error naming the file, not a verdict on the kernel."""
    if not vm.has_monitor:
        return None
    events = vm.monitor.events_named("BLOCK_IO_ERROR")
    if not events:
        return None
    data = events[0].get("data", {})
    why = "the host's disk is full" if data.get("nospace") else f"host I/O error: {data.get('reason', '?')}"
    return FlowStop(Verdict.HOST_IO_ERROR, f"{why} ({vm.files.disk}, {data.get('operation', '?')})",
                    [f"QMP event BLOCK_IO_ERROR {e.get('data')}" for e in events[:5]])


def stop_for_console_failure(vm: GuestVM, err: Exception, step_text: str) -> FlowStop:
    """What a console timeout or EOF means, judged from the console and QEMU's logs."""
    io_error = host_io_error(vm)
    if io_error is not None:
        return io_error
    if isinstance(err, ConsoleEOF):
        exit_info = vm.wait_exit(15)
        tf = triple_fault_evidence(read_log(vm.files.cpu_reset_log))
        events = [f"QMP event {e.get('event')} {e.get('data')}" for e in exit_info.shutdown_events]
        if tf:
            return FlowStop(Verdict.TRIPLE_FAULT, f"triple fault while waiting for {err.waiting_for}",
                            ["-- last console lines --", *err.last_lines.splitlines()[-8:],
                             "-- QEMU -d cpu_reset --", *tf, *events])
        panic = panic_lines(step_text)
        if panic:
            return FlowStop(Verdict.PANIC, f"kernel panic while waiting for {err.waiting_for}", panic + events)
        return FlowStop(Verdict.GUEST_RESET, f"the machine reset (no triple fault logged) while waiting for {err.waiting_for}",
                        [*err.last_lines.splitlines()[-15:], *events])
    assert isinstance(err, ConsoleTimeout)
    panic = panic_lines(step_text)
    if panic:
        return FlowStop(Verdict.PANIC, f"kernel panic; then no {err.waiting_for}", panic)
    errors = kexec_error_lines(step_text)
    return FlowStop(Verdict.HANG, f"no {err.waiting_for} within {err.seconds:.0f} s",
                    [*errors, "-- last console lines --", *err.last_lines.splitlines()])


MEMORY_LOG_TAIL = 20  # lines of a log read from memory quoted in the evidence (the report has it all)
FROM_MEMORY = "read from memory"  # in the evidence's heading of such lines


def oops_trace(lines: list[str], context_after: int = 30) -> list[str]:
    """The first oops or panic in a kernel log and what follows it, up to the end of its
    trace (or of the panic), or []."""
    for i, line in enumerate(lines):
        if OOPS_RE.search(line):
            trace = [line]
            for later in lines[i + 1:i + 1 + context_after]:
                trace.append(later)
                if "---[ end trace" in later or "---[ end Kernel panic" in later:
                    break
            return trace
    return []


def judge_with_memory_log(stop: FlowStop, mlog: MemoryLog, jumps_out: int) -> FlowStop:
    """A guest died silently (`stop`: a HANG, a reset or a triple fault) and its kernel log
    was read from memory. An oops or a panic there (for kernel A: after its latest jump
    out) is the cause of a hang or a reset: the verdict becomes PANIC with that trace as
    evidence. A triple fault stays one (the CPU's own record says how it died) with the
    trace leading its evidence. Otherwise the verdict stands and the log's last lines join
    the evidence. The console's evidence is kept either way. The log's lines are read as
    the console's are (lab.console.clean)."""
    lines = [clean(line) for line in mlog.lines]
    since = log_since_jump("\n".join(lines), jumps_out) if mlog.role == "A" and jumps_out else None
    trace = oops_trace(since if since is not None else lines)
    where = f"{mlog.kernel}'s log, {FROM_MEMORY} ({mlog.snapshot.name})"
    if trace and stop.verdict is not Verdict.TRIPLE_FAULT:
        then = f"no answer ({stop.reason})" if stop.verdict is Verdict.HANG else stop.reason
        return FlowStop(Verdict.PANIC, f"{mlog.kernel} died with nothing on the console: {trace[0].strip()} "
                        f"(its log {FROM_MEMORY}); then {then}",
                        [f"-- {where} --", *trace, "-- the console --", *stop.evidence])
    if trace:
        return FlowStop(stop.verdict, stop.reason, [f"-- {where} --", *trace, "-- the console --", *stop.evidence])
    tail = lines[-MEMORY_LOG_TAIL:]
    return FlowStop(stop.verdict, stop.reason,
                    [*stop.evidence, f"-- last {len(tail)} lines of {where} --", *tail])


def step_console_text(vm: GuestVM, step: Step) -> str:
    try:
        with open(vm.console_log, "rb") as f:
            f.seek(step.console_start)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_log(path: Path) -> str:
    """A log QEMU or the console wrote, or "" when there is none (yet)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
