"""Host commands: a command that runs too long is killed, with its whole process group,
and the error names it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.errors import CommandFailed, CommandTimeout
from lab.proc import run


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_timeout_names_the_command(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as exc:
        run(["sleep", "30"], timeout=0.5, log_path=tmp_path / "log")
    assert time.monotonic() - t0 < 10
    msg = str(exc.value)
    assert "sleep 30" in msg and "still running after" in msg and str(tmp_path / "log") in msg
    assert exc.value.argv == ["sleep", "30"] and isinstance(exc.value, CommandFailed)


def test_timeout_kills_children_that_hold_the_output(tmp_path: Path) -> None:
    """A child that inherited the pipe (make's compilers) must not keep run() waiting."""
    pidfile = tmp_path / "child.pid"
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match="sh -c"):
        run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert time.monotonic() - t0 < 10
    child = int(pidfile.read_text())
    for _ in range(50):  # killed with the group: gone, or a zombie nobody reaped yet
        if not alive(child):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child {child} of the timed-out command still runs")


def test_a_command_that_closes_its_output_still_times_out() -> None:
    with pytest.raises(CommandTimeout):
        run(["sh", "-c", "exec >/dev/null 2>&1; sleep 30"], timeout=0.5)


def test_quick_commands_are_unaffected(tmp_path: Path) -> None:
    assert run(["sh", "-c", "echo hello"], timeout=5) == "hello\n"
    with pytest.raises(CommandFailed) as exc:
        run(["sh", "-c", "echo oops; exit 3"], timeout=5)
    assert exc.value.returncode == 3 and not isinstance(exc.value, CommandTimeout)
