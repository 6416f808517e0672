"""Stopping a guest at an exact instruction: GDB, driven through its machine interface
(pygdbmi), attached to QEMU's gdbstub on a private Unix socket.

The lab uses it for the two moments when no code of kernel A runs: the first
instruction of the image A jumps into (departure) and A's jump-back entry (return).
Both run in physical addressing: with paging off on i386, where the breakpoint is
conditional on CR0.PG = 0; identity-mapped in long mode on x86_64 (paging is always on
there), where it is conditional on ring 0 (CS.RPL = 0). Either way a user process of
another kernel that happens to run at the same linear address does not stop the guest
(lab.arch.ArchInfo.jump_entry_condition). Under TCG a breakpoint does not
write into guest memory, so the snapshots taken while stopped are untouched by it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pygdbmi.gdbcontroller import GdbController

from .arch import Arch
from .errors import GuestError, InfraError

log = logging.getLogger(__name__)

GDB = "gdb"


class GdbError(GuestError):
    """GDB could not attach, set a breakpoint or resume the guest."""


class GdbStub:
    """One GDB attached to one QEMU; every MI record is appended to `log_path`."""

    def __init__(self, socket_path: Path, log_path: Path, arch: Arch = Arch.I386) -> None:
        self.socket_path, self.log_path, self.arch = socket_path, log_path, arch
        self._gdb: GdbController | None = None
        self._pending: list[dict[str, Any]] = []

    def attach(self) -> None:
        """Connect; the guest stops while GDB is attached and stopped."""
        if shutil.which(GDB) is None:
            raise InfraError("gdb is not installed (Debian package 'gdb'; ./bootstrap.sh installs it)")
        self._gdb = GdbController(command=[GDB, "--nx", "--quiet", "--interpreter=mi3"],
                                  time_to_check_for_additional_output_sec=0.02)
        self._mi(f"-gdb-set architecture {self.arch.info.gdb}")
        self._mi(f"-target-select remote {self.socket_path}", timeout=20)

    def break_at(self, address: int) -> str:
        """A hardware breakpoint at a physical address, taken only in the arch's physical
        addressing of a kexec jump (paging off on i386, ring 0 on x86_64)."""
        return self._hbreak(f'-c "{self.arch.info.jump_entry_condition}" *{address:#x}', address)

    def break_at_kernel(self, address: int) -> str:
        """A hardware breakpoint at a virtual address of the running kernel (paging on)."""
        return self._hbreak(f"*{address:#x}", address)

    def _hbreak(self, where: str, address: int) -> str:
        """-break-insert -h WHERE; the breakpoint's number."""
        records = self._mi(f"-break-insert -h {where}")
        for r in records:
            if r.get("message") == "done" and isinstance(r.get("payload"), dict):
                return str(r["payload"]["bkpt"]["number"])
        raise GdbError(f"GDB set no breakpoint at {address:#x}: {records}")

    def register(self, name: str) -> int:
        """A register of the stopped CPU (e.g. "sp")."""
        for r in self._mi(f"-data-evaluate-expression ${name}"):
            payload = r.get("payload")
            if r.get("message") == "done" and isinstance(payload, dict) and "value" in payload:
                value = str(payload["value"]).split()[0]
                return int(value, 0) & ((1 << 64) - 1)
        raise GdbError(f"GDB did not read ${name}")

    def resume(self) -> None:
        """Let the guest run; what GDB reported before (the stop of attaching) is stale."""
        self._pending.clear()
        self._mi("-exec-continue")

    def wait_stopped(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        """The next *stopped record (a breakpoint hit); raises TimeoutError after `timeout`
        seconds, or GdbError when the guest is gone (`alive()` false)."""
        deadline = time.monotonic() + timeout
        while True:
            if not alive():
                raise GdbError("QEMU exited before the guest reached the breakpoint")
            for i, r in enumerate(self._pending):
                if r.get("type") == "notify" and r.get("message") == "stopped":
                    del self._pending[: i + 1]
                    return r.get("payload") or {}
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the guest did not reach the breakpoint within {timeout:.0f} s")
            self._pending += self._read(min(left, 1.0))

    def delete(self, number: str) -> None:
        self._mi(f"-break-delete {number}")

    def detach(self) -> None:
        """Detach (QEMU resumes the guest) and end GDB."""
        if self._gdb is None:
            return
        try:
            self._mi("-target-detach", timeout=10)
        except GdbError as e:  # QEMU gone or GDB wedged: ending GDB is all that is left
            log.debug("gdb detach: %s", e)
        finally:
            self.close()

    def close(self) -> None:
        if self._gdb is not None:
            try:
                self._gdb.exit()
            except Exception as e:  # GDB already gone: nothing left to end
                log.debug("gdb exit: %s", e)
            self._gdb = None

    # -- MI plumbing ------------------------------------------------------------------------

    def _read(self, timeout: float) -> list[dict[str, Any]]:
        assert self._gdb is not None
        records = self._gdb.get_gdb_response(timeout_sec=timeout, raise_error_on_timeout=False)
        self._log(records)
        return records

    def _mi(self, command: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send one MI command and wait for its result record (^done, ^running, ^error)."""
        if self._gdb is None:
            raise GdbError("GDB is not attached")
        self._log([{"type": "command", "payload": command}])
        self._gdb.write(command, read_response=False)
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            records = self._read(min(1.0, max(0.05, deadline - time.monotonic())))
            # Keep every other record of the batch (a *stopped may come right after ^running).
            self._pending += [r for r in records if r.get("type") != "result"]
            got += [r for r in records if r.get("type") == "result"]
            for r in got:
                if r.get("message") == "error":
                    raise GdbError(f"GDB: {command}: {(r.get('payload') or {}).get('msg', r)}")
            if got:
                return got
        raise GdbError(f"GDB did not answer {command!r} within {timeout:.0f} s")

    def _log(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            for r in records:
                f.write(f"{time.time():.3f} {r.get('type')} {r.get('message') or ''} {r.get('payload')!r}\n")
