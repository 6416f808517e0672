"""Child processes that do not outlive the lab, and signals that stop it cleanly.

- die_with_parent: a `preexec_fn` for subprocess.Popen. The child asks the kernel
  (prctl PR_SET_PDEATHSIG) for SIGKILL when its parent dies, so a matrix cell, or a
  QEMU, never runs on after kjlab was killed (SIGKILL, OOM, a crash: no `finally` runs).
  Linux delivers it when the *thread* that started the child ends: start such children
  from a thread that lives as long as they should (the main thread).
- end_group / kill_group / group_members: signals to a process group (a cell started
  with start_new_session=True, its QEMUs and any helper they left), and who is still in it.
- stop_signals: SIGINT and SIGTERM set a flag instead of raising, for loops that must
  finish their bookkeeping before they stop (lab.matrix_run).
- sigterm_as_interrupt: SIGTERM raises KeyboardInterrupt, as Ctrl-C does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

# Resolved here, in the parent: the child after fork() only makes the call.
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when its parent dies.

    If the parent died between fork() and the prctl (its pid changed under us: the child
    was re-parented), the child kills itself at once rather than run orphaned.
    """
    parent = os.getppid()
    if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


# -- process groups -----------------------------------------------------------------------


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Send `sig` to process group `pgid`; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # pid reused by someone else's group: not ours to signal
        log.warning("process group %d: no permission to signal it", pgid)
        return False


def group_members(pgid: int) -> list[int]:
    """The live processes (not zombies) of process group `pgid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


def exited(proc: subprocess.Popen[Any]) -> bool:
    """Has `proc` exited? Without reaping it: a zombie leader keeps its process group
    id, so the group can still be signalled safely (the id cannot be reused meanwhile)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped elsewhere
        return True


def end_group(procs: Iterable[subprocess.Popen[Any]], grace: float, hurry: threading.Event | None = None) -> None:
    """SIGTERM to each process's group (each a session leader), SIGKILL to the groups
    still there after `grace` seconds (at once when `hurry` is set), then reap them."""
    procs = list(procs)
    for proc in procs:
        if not exited(proc):
            kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(not exited(p) for p in procs) and time.monotonic() < deadline and not (hurry and hurry.is_set()):
        time.sleep(0.05)
    for proc in procs:
        if group_members(proc.pid):
            log.warning("process group %d still there after SIGTERM: SIGKILL", proc.pid)
            kill_group(proc.pid, signal.SIGKILL)
        proc.wait()


# -- signals ------------------------------------------------------------------------------


@dataclass
class StopRequest:
    signum: int = 0  # the first signal that asked to stop (0: none yet)
    hurry: threading.Event = field(default_factory=threading.Event)  # a second signal: no more grace

    @property
    def requested(self) -> bool:
        return self.signum != 0


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set the request's flag instead of raising; a second one sets
    `hurry`. Outside the main thread (signals cannot be caught there) nothing changes."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            stop.hurry.set()
        else:
            stop.signum = signum
        log.warning("%s: stopping", signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
