"""Child processes that do not outlive the lab: the kernel ends them when their parent
dies, however it dies (SIGKILL, the OOM killer, a CI job's timeout)."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """preexec_fn for subprocess.Popen: SIGKILL this child when the thread that started
    it ends (start long-lived children from the main thread)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
