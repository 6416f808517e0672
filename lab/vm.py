"""One QEMU process as a context manager: start paused, attach QMP and console, run,
and whatever happens, end it (QMP quit, then SIGTERM, then SIGKILL). No orphans.

A machine that ends by itself (power off, reboot, a triple fault) does not end QEMU:
QEMU stops it in its shutdown state with its memory intact (`-action
reboot=shutdown,shutdown=pause`) and says SHUTDOWN on QMP. The lab then hangs up the
console, so a flow waiting on it sees the end at once, and may dump the memory of a
machine that died silently (lab.flows.common) before the `with` block quits QEMU."""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .console import Console, tail_of_file
from .errors import GuestError
from .gdbstub import GdbStub
from .lifetime import die_with_parent
from .machines import MachineSpec
from .monitor import Monitor
from .qemu_cmdline import BootFiles, qemu_argv

log = logging.getLogger(__name__)

# SHUTDOWN reasons that are the lab's own doing (QMP quit, a signal), not the guest's
HOST_REASONS = {"host-qmp-quit", "host-signal", "host-ui", "host-qmp-system-reset"}


@dataclass
class VMExit:
    returncode: int | None
    shutdown_events: list[dict[str, Any]] = field(default_factory=list)
    triple_fault: bool = False
    cpu_reset_tail: str = ""


class QemuVM:
    """The real guest machine (lab.guest.GuestVM): one QEMU process."""

    def __init__(self, name: str, spec: MachineSpec, files: BootFiles, accel: str, run_dir: Path) -> None:
        self.name, self.spec, self.files, self.accel = name, spec, files, accel
        self.argv = qemu_argv(spec, files, accel)
        self.stderr_log = run_dir / f"qemu-{name}.log"
        self.console_log = run_dir / f"console-{name}.log"
        self.qmp_log = run_dir / "qmp.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._console: Console | None = None
        self._monitor: Monitor | None = None
        self.exit: VMExit | None = None
        self.started_at = 0.0
        self.lab_signalled = False  # the lab itself sent QEMU a signal (teardown)

    def __enter__(self) -> "QemuVM":
        log.info("starting %s: %s", self.name, shlex.join(self.argv))
        self.stderr_log.write_text(f"$ {shlex.join(self.argv)}\n")
        with open(self.stderr_log, "a") as errf:
            # QEMU dies with the lab, even when the lab is SIGKILLed (no orphaned guests).
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                         preexec_fn=die_with_parent)
        try:
            self._monitor = Monitor(self.files.qmp_socket, self.qmp_log, self.name)
            self._monitor.connect()
            self._console = Console(self.files.serial_socket, self.console_log, self.name)
            self._monitor.on_event = self._on_event
            self.monitor.cmd("cont")
            self.started_at = time.monotonic()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._teardown()

    # -- state --------------------------------------------------------------------------

    @property
    def console(self) -> Console:
        if self._console is None:
            raise GuestError(f"{self.name}: no console (QEMU not started)")
        return self._console

    @property
    def has_console(self) -> bool:
        return self._console is not None

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            raise GuestError(f"{self.name}: no QMP monitor (QEMU not started)")
        return self._monitor

    @property
    def has_monitor(self) -> bool:
        return self._monitor is not None

    def debugger(self, log_path: Path) -> GdbStub | None:
        """GDB on this QEMU's gdbstub (lab.gdbstub), if it has one."""
        return GdbStub(self.files.gdb_socket, log_path, self.spec.arch) if self.files.gdb_socket else None

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "SHUTDOWN" and self._console is not None:
            self._console.hang_up()

    def _guest_shutdowns(self) -> list[dict[str, Any]]:
        events = self._monitor.events_named("SHUTDOWN") if self._monitor else []
        return [e for e in events if (e.get("data") or {}).get("reason") not in HOST_REASONS]

    def killed_by(self) -> str | None:
        """The signal that ended QEMU from outside the lab (the OOM killer, an operator), or
        None: QEMU runs, ended by its guest or by the lab. SIGKILL leaves a negative exit
        status; SIGTERM, SIGINT and SIGHUP make QEMU say SHUTDOWN "host-signal" and exit 0."""
        if self.proc is None or self.proc.poll() is None or self.lab_signalled:
            return None
        code = self.proc.returncode
        if code < 0:
            return _signal_name(-code)
        events = self._monitor.events_named("SHUTDOWN") if self._monitor else []
        if any((e.get("data") or {}).get("reason") == "host-signal" for e in events):
            return "a signal QEMU handles (SIGTERM, SIGINT or SIGHUP: SHUTDOWN host-signal)"
        return None

    def running(self) -> bool:
        """The guest runs (or is paused by the lab): QEMU is there and the machine has not ended."""
        return self.proc is not None and self.proc.poll() is None and not self._guest_shutdowns()

    def halted(self) -> bool:
        """The machine ended by itself and QEMU holds it stopped, its memory intact."""
        return self.proc is not None and self.proc.poll() is None and bool(self._guest_shutdowns())

    def wait_exit(self, timeout: float) -> VMExit:
        """Wait for the machine to end by itself (power off, reboot -f, a triple fault):
        a SHUTDOWN on QMP, or QEMU's exit."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self._guest_shutdowns():
            try:
                self.proc.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise GuestError(f"{self.name}: the machine still running {timeout:.0f} s after it should "
                                     "have stopped") from None
        return self._collect_exit()

    def _collect_exit(self) -> VMExit:
        """How the machine ended; taken once, at its end (teardown takes it too)."""
        if self.exit is None:
            events = self._monitor.events_named("SHUTDOWN") if self._monitor else []
            tail = tail_of_file(self.files.cpu_reset_log, 40)
            self.exit = VMExit(
                returncode=self.proc.returncode if self.proc else None,
                shutdown_events=events,
                triple_fault=triple_fault_in(self.files.cpu_reset_log),
                cpu_reset_tail=tail,
            )
        return self.exit

    # -- teardown -----------------------------------------------------------------------

    def _teardown(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None and self._monitor is not None:
            try:
                self._monitor.cmd("quit", timeout=3)
            except Exception as e:  # it may be wedged; the signals below will end it
                log.debug("%s: QMP quit failed: %s", self.name, e)
        if proc is not None:
            for sig_step in (proc.terminate, proc.kill):
                try:
                    proc.wait(3)
                    break
                except subprocess.TimeoutExpired:
                    self.lab_signalled = True
                    sig_step()
            proc.wait()
            self._collect_exit()
        if self._console:
            self._console.close()
        if self._monitor:
            self._monitor.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def triple_fault_in(cpu_reset_log: Path) -> bool:
    try:
        with open(cpu_reset_log, "rb") as f:
            return any(line.strip() == b"Triple fault" for line in f)
    except OSError:
        return False
