"""Running host commands: argument lists only, output to a log file, errors with the tail."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .lifetime import die_with_parent
from .errors import CommandFailed, CommandTimeout

log = logging.getLogger(__name__)


def run(
    argv: list[str],
    *,
    log_path: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 25,
    timeout: float | None = 3600,
) -> str:
    """Run argv; return its output (when no log_path) or "" (output went to log_path).

    Output is appended to log_path when given. `on_line` sees each output line as it
    comes (for progress). Raises CommandFailed with the last lines on a non-zero exit,
    CommandTimeout (naming the command) when it runs longer than `timeout` seconds: a hung
    mirror or a wedged tool must not stall a night for ever.

    The command runs in a process group of its own; a timeout or an exception here (Ctrl-C)
    kills the whole group, so children that inherited the output pipe (make's compilers,
    apt's methods) cannot keep it open and outlive the command.
    """
    log.debug("run: %s", shlex.join(argv))
    timed_out: list[bool] = []
    finished = threading.Event()
    tail: deque[str] = deque(maxlen=tail_lines)
    collected: list[str] = []
    logf = open(log_path, "a", encoding="utf-8", errors="replace") if log_path else None
    try:
        if logf:
            logf.write(f"$ {shlex.join(argv)}\n")
            logf.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            process_group=0,
            preexec_fn=die_with_parent,  # a build does not outlive a killed lab
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout if timeout else None
        timer = threading.Timer(timeout, _expire, (proc, timed_out, finished)) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                if logf:
                    logf.write(line)
                else:
                    collected.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            finished.set()
            try:  # the output closed; the command itself gets what is left of its time
                rc = proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out.append(True)
                _kill_group(proc)
                rc = proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
    finally:
        if logf:
            logf.close()
    if timed_out:
        raise CommandTimeout(argv, timeout or 0, "\n".join(tail), str(log_path) if log_path else "")
    if rc != 0:
        raise CommandFailed(argv, rc, "\n".join(tail), str(log_path) if log_path else "")
    return "".join(collected)


def _expire(proc: subprocess.Popen[str], timed_out: list[bool], finished: threading.Event) -> None:
    # the output still open: the command, or a child of it that holds the pipe, still runs
    if not finished.is_set():
        timed_out.append(True)
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL to the command's process group (its pid: process_group=0)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
