"""The serial console: pexpect over the UNIX socket of QEMU's socket chardev.

Every byte read goes to the boot's console log as it arrives. Commands are framed by
a unique exit-status marker (labgrid's ShellDriver idea): `cmd; echo "<KJ7:$?>"`; the
echoed command line (if echo were on) shows `$?`, not digits, so it never matches.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pexpect
import pexpect.fdpexpect

from .errors import ConsoleEOF, ConsoleTimeout, GuestError

log = logging.getLogger(__name__)

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")
# A lab build compiles a staged copy of the kernel's source, ../src from its object
# directory (lab.artifacts.kernel), so the kernel prints its own file paths (WARNING: ...
# at FILE:LINE, kernel BUG at FILE:LINE) as ../src/arch/x86/...; the lab reads them as a
# build in the source tree prints them: arch/x86/...
STAGED_SRC_RE = re.compile(r"(?<![\w./-])\.\./src/")
# The guest shell's prompt (guests/rootfs/init sets PS1="kj-<role># "); with echo off it
# is printed after each command, so it starts the next command's output.
PROMPT_RE = re.compile(r"^(?:kj-[A-Z]# ?)+")


@dataclass(frozen=True)
class CommandResult:
    command: str
    output: str
    status: int
    seconds: float


class Console:
    def __init__(self, socket_path: Path, log_path: Path, name: str) -> None:
        self.name, self.log_path = name, log_path
        self._sock = _connect_unix(socket_path)
        self._logf: BinaryIO = open(log_path, "ab", buffering=0)
        self._child = pexpect.fdpexpect.fdspawn(self._sock.fileno(), timeout=30, maxread=65536)
        self._child.logfile_read = self._logf
        self._seq = 0

    # -- raw access ---------------------------------------------------------------------

    def offset(self) -> int:
        """Bytes written to the console log so far (for step excerpts)."""
        return self._logf.tell()

    def send_line(self, text: str) -> None:
        self._child.send(text.encode() + b"\n")

    def expect(self, patterns: list[str | type], timeout: float, what: str) -> int:
        """Wait for one of `patterns` (regexes, or pexpect.EOF / pexpect.TIMEOUT to get an index).

        Without EOF/TIMEOUT in the list, they raise ConsoleEOF / ConsoleTimeout with the
        last lines seen.
        """
        try:
            index: int = self._child.expect([p.encode() if isinstance(p, str) else p for p in patterns], timeout=timeout)
            return index
        except pexpect.TIMEOUT:
            raise ConsoleTimeout(what, timeout, self.last_lines()) from None
        except pexpect.EOF:
            raise ConsoleEOF(what, self.last_lines()) from None

    @property
    def match_text(self) -> str:
        m = self._child.match
        return m.group(0).decode(errors="replace") if m and not isinstance(m, type) else ""

    @property
    def before(self) -> str:
        b = self._child.before
        return b.decode(errors="replace") if isinstance(b, bytes) else ""

    def last_lines(self, n: int = 15) -> str:
        return tail_of_file(self.log_path, n)

    # -- commands -----------------------------------------------------------------------

    def start(self, command: str) -> str:
        """Send a command framed by a marker; return the marker regex to wait for."""
        self._seq += 1
        tag = f"KJ-{self.name}-{self._seq}"  # unique across the VMs of a run
        self.send_line(f'{command}; echo "<{tag}:$?>"')
        return "<" + re.escape(tag) + r":(\d+)>"

    def wait_marker(self, marker: str, timeout: float, what: str) -> tuple[str, int]:
        self.expect([marker], timeout, what)
        status = int(self._child.match.group(1))
        return clean_output(self.before), status

    def run(self, command: str, timeout: float = 30.0, check: bool = False) -> CommandResult:
        t0 = time.monotonic()
        output, status = self.wait_marker(self.start(command), timeout, f"end of `{command}`")
        result = CommandResult(command, output, status, time.monotonic() - t0)
        log.debug("%s$ %s -> %d", self.name, command, status)
        if check and status != 0:
            raise GuestError(f"`{command}` exited {status} on {self.name}:\n{output}")
        return result

    def hang_up(self) -> None:
        """End the console from our side (another thread may call it): a reader gets what
        is already queued on the socket, then EOF. For a machine that ended but whose QEMU
        keeps it paused (lab.vm): its console is over, and the flow waiting on it learns so
        at once, as it would from a QEMU that exited."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            self._logf.close()


def _connect_unix(path: Path, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError as e:
            s.close()
            if time.monotonic() > deadline:
                raise GuestError(f"serial console socket {path} did not accept: {e}") from e
            time.sleep(0.05)


def clean(text: str) -> str:
    """Console text as the lab reads and records it: without CRs and terminal escapes, and
    the kernel's file paths without a staged build's ../src/ (the console log itself keeps
    every byte)."""
    return STAGED_SRC_RE.sub("", ANSI_RE.sub("", text.replace("\r", "")))


def clean_output(text: str) -> str:
    """Console text (clean) without the shell prompt lines."""
    text = clean(text)
    lines = [PROMPT_RE.sub("", line) for line in text.split("\n") if not PROMPT_RE.fullmatch(line.rstrip())]
    return "\n".join(lines).strip("\n")


def tail_of_file(path: Path, n: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    text = clean(data)
    return "\n".join(text.rstrip("\n").split("\n")[-n:])
