"""Running host commands: argument lists only, output to a log file, errors with the tail."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .errors import CommandFailed

log = logging.getLogger(__name__)


def run(
    argv: list[str],
    *,
    log_path: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 25,
) -> str:
    """Run argv; return its output (when no log_path) or "" (output went to log_path).

    Output is appended to log_path when given. `on_line` sees each output line as it
    comes (for progress). Raises CommandFailed with the last lines on a non-zero exit.
    """
    log.debug("run: %s", shlex.join(argv))
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
        if logf:
            logf.close()
    if rc != 0:
        raise CommandFailed(argv, rc, "\n".join(tail), str(log_path) if log_path else "")
    return "".join(collected)
