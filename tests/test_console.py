"""lab.console against a real shell behind a UNIX socket (tests/fakes.py)."""

from pathlib import Path

import pexpect
import pytest

from lab.console import Console, clean_output
from lab.errors import ConsoleEOF, ConsoleTimeout
from tests.fakes import FakeSerialShell


@pytest.fixture
def shell(tmp_path: Path):
    fake = FakeSerialShell(tmp_path / "serial.sock", banner=b"\x1b[2J[    0.000000] Linux version 6.1\r\nKJLAB-READY role=A\r\n")
    console = Console(tmp_path / "serial.sock", tmp_path / "console.log", "A-B")
    yield console, tmp_path / "console.log"
    console.close()
    fake.close()


def test_waits_for_ready_and_runs_commands_with_status(shell):
    console, log = shell
    console.expect([r"KJLAB-READY role=A"], 5, "ready")
    ok = console.run("echo hello; echo world", timeout=5)
    assert (ok.output, ok.status) == ("hello\nworld", 0)
    bad = console.run("ls /definitely/not/here", timeout=5)
    assert bad.status != 0 and "not/here" in bad.output
    assert b"Linux version 6.1" in log.read_bytes()  # every byte lands in the log
    assert console.offset() == log.stat().st_size


def test_marker_of_a_command_can_be_awaited_later(shell):
    console, _ = shell
    console.expect([r"KJLAB-READY role=A"], 5, "ready")
    marker = console.start("sleep 0.3; echo late; false")
    output, status = console.wait_marker(marker, 5, "late command")
    assert status == 1 and output == "late"


def test_timeout_carries_last_lines(shell):
    console, _ = shell
    with pytest.raises(ConsoleTimeout) as exc:
        console.expect([r"NEVER-PRINTED"], 0.5, "a line that never comes")
    assert "KJLAB-READY role=A" in exc.value.last_lines
    assert "a line that never comes" in str(exc.value)


def test_eof_when_the_other_side_goes_away(shell):
    console, _ = shell
    console.send_line("echo bye; exit")
    with pytest.raises(ConsoleEOF) as exc:
        console.expect([r"NEVER"], 5, "anything")
    assert "bye" in exc.value.last_lines


def test_expect_returns_index_for_eof_when_asked(shell):
    console, _ = shell
    console.send_line("exit")
    assert console.expect([r"NEVER", pexpect.EOF], 5, "exit") == 1


def test_clean_output_strips_prompts_and_escapes():
    assert clean_output("kj-A# \x1b[6nhello\r\nkj-A# \n") == "hello"


def test_hang_up_from_another_thread_ends_a_wait_at_once_keeping_what_came(shell):
    """A machine that ended while QEMU holds it (lab.vm): the monitor's thread hangs up the
    console, and the flow waiting on it gets EOF at once, with the last lines it sent."""
    import threading
    import time

    console, _ = shell
    console.expect([r"KJLAB-READY role=A"], 5, "ready")
    console.send_line("echo last words")
    time.sleep(0.3)  # the words are on the socket, not yet read
    threading.Timer(0.3, console.hang_up).start()
    t0 = time.monotonic()
    with pytest.raises(ConsoleEOF) as exc:
        console.expect([r"NEVER"], 30, "anything")
    assert time.monotonic() - t0 < 5
    assert "last words" in exc.value.last_lines
    console.hang_up()  # twice is harmless
