"""What a flow needs from a guest machine, as an interface: lab.vm.QemuVM is the real
one (a QEMU process); tests/replay.py replays a recorded run through the same interface.

The console is the lab's own Console (pexpect on a serial socket) either way: a replay
serves the recorded console bytes on a socket of its own. QMP, the gdbstub and the
machine's exit are what differ, so they are the interface's parts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from .console import Console
    from .machines import MachineSpec
    from .qemu_cmdline import BootFiles
    from .vm import VMExit


class GuestMonitor(Protocol):
    """The QMP monitor: commands (stop, cont, dump-guest-memory, quit...) and the events kept."""

    def cmd(self, name: str, timeout: float = 60.0, **args: Any) -> Any: ...

    def hmp(self, command: str) -> str: ...

    def events_named(self, name: str) -> list[dict[str, Any]]: ...


class Debugger(Protocol):
    """Stopping the guest at one instruction (lab.gdbstub.GdbStub on QEMU's gdbstub)."""

    log_path: Path

    def attach(self) -> None: ...

    def break_at(self, address: int) -> str: ...

    def break_at_kernel(self, address: int) -> str: ...

    def register(self, name: str) -> int: ...

    def resume(self) -> None: ...

    def wait_stopped(self, timeout: float, alive: Callable[[], bool] = ...) -> dict[str, Any]: ...

    def delete(self, number: str) -> None: ...

    def detach(self) -> None: ...

    def close(self) -> None: ...


class GuestVM(Protocol):
    """One guest machine, started by `with` and ended when the block ends."""

    name: str
    files: BootFiles  # its kernel, disk, sockets and cpu_reset log
    console_log: Path
    stderr_log: Path
    qmp_log: Path

    def __enter__(self) -> Self: ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None: ...

    @property
    def console(self) -> Console: ...

    @property
    def has_console(self) -> bool: ...

    @property
    def monitor(self) -> GuestMonitor: ...

    @property
    def has_monitor(self) -> bool: ...

    def running(self) -> bool:
        """The machine has not ended (it may be paused by the lab)."""
        ...

    def halted(self) -> bool:
        """The machine ended by itself and is held stopped with its memory intact (dumpable)."""
        ...

    def killed_by(self) -> str | None:
        """The signal that ended the machine's process from outside the lab, or None."""
        ...

    def wait_exit(self, timeout: float) -> VMExit:
        """Wait for the machine to end by itself (power off, reboot -f, a triple fault)."""
        ...

    def debugger(self, log_path: Path) -> Debugger | None:
        """A debugger for this machine, or None if it has no gdbstub."""
        ...


# How a flow makes its machines: (name, machine, boot files, accelerator, run directory).
GuestFactory = Callable[[str, "MachineSpec", "BootFiles", str, Path], GuestVM]
