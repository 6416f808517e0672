"""Running host commands: argument lists only, output to a log file, errors with the tail."""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

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
    """
    log.debug("run: %s", shlex.join(argv))
    timed_out: list[bool] = []
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
        )
        assert proc.stdout is not None
        timer = threading.Timer(timeout, _expire, (proc, timed_out)) if timeout else None
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
            rc = proc.wait()
        except BaseException:
            proc.kill()
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


def _expire(proc: subprocess.Popen[str], timed_out: list[bool]) -> None:
    if proc.poll() is None:
        timed_out.append(True)
        proc.kill()
