"""A fake guest that replays a real run of the lab (a run directory: results.json and the
console logs QEMU's serial port gave), through the interface the flows use
(lab.guest.GuestVM). The flow under test runs for real against it: its own Console
(pexpect) on a serial socket, its own Recorder, its own verdicts.

The console: the guest shell prints its prompt (`kj-X# `) when it waits for a line, so
the recorded log is served up to the next prompt each time the flow sends a line (and
up to the first prompt at boot). A line that carries the lab's exit-status marker
(`<KJ-vm-N:$?>`) must find that marker in the rest of the recorded consoles (a jump,
`kexec -e`, excepted: its shell may never get control back): if the flow sent more
commands than the recorded run, the replay ends the console (EOF) and names the
divergence. The tests compare every step's commands with the recorded ones. When the log has no prompt left, the rest of it is
served and the line closes: QEMU exited (power-off, triple fault).

QMP, the gdbstub and the exit are emulated: `stop`/`cont`/`quit` are kept, the recorded
QMP events of the machine are there once it exited, and the cpu_reset log of the
recorded run appears when it exits. The debugger stops at a breakpoint only if the
recorded run captured that moment (its record names the snapshot).

Memory and disk: a real run's snapshots (256 MiB each) are too big to keep, so the
fake guest has a small synthetic memory of A (16 MiB at the top of A's RAM) that the
commands the flow sends fill as kj-sentinel and A's shell would: the sentinel pages of
the run's plan (token and seed read from the command itself), the snapshot-debug
markers. dump-guest-memory writes it as an ELF core; B's `cp /proc/vmcore /mnt/NAME`
writes it onto the real ext2 hibernation disk (debugfs), where the host side of the
flow reads it. C's `kj-proof crc32` of that file reports the CRC-32 of what is on the
disk (the recorded one is of the real image, which the replay does not have).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.arch import Arch
from lab.console import Console
from lab.errors import GuestError
from lab.flows import FLOWS
from lab.flows.base import Recorder
from lab.flows.common import FlowArtifacts, FlowContext
from lab.hibernation_disk import make_disk
from lab.image_tools import crc32_file, read_from_disk, write_to_disk
from lab.machines import MachineSpec
from lab.memory.kexec_pages import IND_DONE
from lab.memory.sentinels import REGION_ANON, REGION_TMPFS, sentinel_page
from lab.qemu_cmdline import BootFiles
from lab.results import RunResult
from lab.runner import judge, run_flow
from lab.scenario import Scenario
from lab.symbols import SymbolMap
from lab.vm import HOST_REASONS, VMExit, triple_fault_in
from tests.test_snapshots import Seg, write_core

PROMPT = re.compile(rb"kj-[A-Z]# ")
SENT_TAG = re.compile(r'<(KJ-[\w-]+-\d+):\$\?>')
PAGE = 4096
MiB = 1 << 20
MEMORY_SPAN = 16 * MiB


@dataclass
class RecordedRun:
    """A run directory of the lab, as the replay reads it."""

    path: Path
    record: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.record = json.loads((self.path / "results.json").read_text())

    def console(self, vm: str) -> bytes:
        return (self.path / f"console-{vm}.log").read_bytes()

    def machines(self) -> list[str]:
        return sorted(p.name.removeprefix("console-").removesuffix(".log") for p in self.path.glob("console-*.log"))

    def cpu_reset(self, vm: str) -> bytes:
        path = self.path / f"cpu-reset-{vm}.log"
        return path.read_bytes() if path.is_file() else b""

    def events(self, vm: str) -> list[dict[str, Any]]:
        path = self.path / "qmp.log"
        if not path.is_file():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e["event"] for e in lines if e.get("vm") == vm and "event" in e]

    def gdb_stops(self, vm: str) -> list[bool]:
        """For each time the flow set a breakpoint on this machine: did the guest stop there?"""
        stops = []
        for step in self.record["steps"]:
            if step["vm"] != vm:
                continue
            said = [c["command"] for c in step["commands"]]
            # each breakpoint set (an attach, or a further hbreak in the same session): a stop
            # before the next one is set
            marks = [i for i, c in enumerate(said) if c.startswith(("GDB: attach", "GDB: hbreak"))] + [len(said)]
            stops += [any(c.startswith("stopped at ") for c in said[i + 1:j]) for i, j in zip(marks, marks[1:])]
        return stops

    def stack_pointers(self, vm: str) -> list[int]:
        """The SPs the recorded run read with GDB on this machine (its notes), in order."""
        found = []
        for step in self.record["steps"]:
            if step["vm"] != vm:
                continue
            for c in step["commands"]:
                found += [int(v, 16) for v in re.findall(r"\bSP(?: at the jump-back entry)? (0x[0-9a-f]+)",
                                                          c["command"] + " " + (c["output"] or ""))]
        return found

    def steps(self) -> list[tuple[str, str]]:
        return [(s["name"], s["outcome"]) for s in self.record["steps"]]

    def commands(self, step: str) -> list[str]:
        return [c["command"] for s in self.record["steps"] if s["name"] == step for c in s["commands"]]


class Memory:
    """A's memory as the commands the flow sends make it (see the module's docstring)."""

    def __init__(self, base: int, arch: Arch = Arch.I386) -> None:
        self.base, self.arch = base, arch
        self.pages: dict[int, bytes] = {}
        self.kernel: dict[int, bytes] = {}  # pages of A's kernel the replay models (load_kexec_image)
        self.next_free = base

    def put(self, page: bytes) -> None:
        if self.next_free + PAGE > self.base + MEMORY_SPAN - PAGE:  # the last page: A's kexec image
            raise GuestError("the replay's synthetic memory is full")
        self.pages[self.next_free] = page
        self.next_free += PAGE

    def heard(self, line: str) -> None:
        m = re.match(r"kj-sentinel (file \S+|anon) (\d+) (0x[0-9a-f]+) (\d+)", line)
        if m:  # `kj-sentinel file /tmp/sentinel N TOKEN SEED` / `kj-sentinel anon N TOKEN SEED`
            region = REGION_TMPFS if m.group(1).startswith("file") else REGION_ANON
            n, token, seed = int(m.group(2)), int(m.group(3), 16), int(m.group(4))
            for index in range(n):
                self.put(sentinel_page(token, index, region, seed))
        m = re.search(r"do echo (KJMOMENT\S+); done", line)
        if m:
            self.put((m.group(1) + "\n").encode() * 8)

    def write(self, path: Path, alter: Callable[[dict[int, bytes]], None] | None = None) -> Path:
        """What B's /proc/vmcore holds of A: the synthetic span."""
        span = range(self.base, self.base + MEMORY_SPAN)
        pages = {**{a: p for a, p in self.kernel.items() if a in span}, **self.pages}
        if alter:  # a test's damage to this one dump (the memory the flow sees at that moment)
            alter(pages)
        return write_core(path, [Seg(self.base, MEMORY_SPAN)], pages, elf_class=64)

    def dump(self, path: Path, a_end: int, alter: Callable[[dict[int, bytes]], None] | None = None) -> Path:
        """dump-guest-memory: all of A's RAM, as QEMU dumps it (a sparse file: zeros but for
        the synthetic span and A's kexec image)."""
        pages = {**self.kernel, **self.pages}
        if alter:
            alter(pages)
        return write_core(path, [Seg(0, a_end)], pages, elf_class=64)

    def load_kexec_image(self, system_map: Path) -> None:
        """A loaded kexec image as A's kernel holds it, where the recorded kernel's
        System.map puts `kexec_image`: a struct kimage (in the span's last page) whose
        entry list is empty (head = IND_DONE). The replay moves no pages between B's window
        and kexec's source pages, so the last leg of the proof reads a list with nothing to
        swap; what it then proves is every page of A's RAM against departure."""
        symbols = SymbolMap.load(system_map, arch=self.arch) if system_map.is_file() else None
        phys = symbols.physical_of("kexec_image") if symbols else None
        if symbols is None or phys is None:
            return
        info = symbols.arch.info
        word = info.elf_class // 8
        kimage = self.base + MEMORY_SPAN - PAGE
        page = bytearray(PAGE)
        page[phys % PAGE:phys % PAGE + word] = (kimage + info.direct_map).to_bytes(word, "little")
        self.kernel[phys - phys % PAGE] = bytes(page)
        self.kernel[kimage] = IND_DONE.to_bytes(word, "little") + bytes(PAGE - word)


class SerialReplay:
    """The guest's end of the serial socket, serving the recorded console log."""

    def __init__(self, path: Path, log: bytes, heard: Callable[[str], Callable[[bytes], bytes] | None],
                 elsewhere: bytes = b"") -> None:
        """elsewhere: the other machines' console logs (A's shell answers a jump from C's)."""
        self.log, self.pos, self.heard, self.elsewhere = log, 0, heard, elsewhere
        self.divergence = ""
        self.ended = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _next(self) -> bytes:
        """The log up to the end of the next prompt; all of it when no prompt is left."""
        m = PROMPT.search(self.log, self.pos)
        end = m.end() if m else len(self.log)
        chunk, self.pos = self.log[self.pos:end], end
        return chunk

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        self.conn = conn
        try:
            conn.sendall(self._next())
            pending = b""
            while not self.ended.is_set() and (data := conn.recv(4096)):
                pending += data
                while b"\n" in pending:
                    raw, pending = pending.split(b"\n", 1)
                    if not self._answer(conn, raw.decode(errors="replace")):
                        return
        except OSError:
            pass  # closed by close()
        finally:
            self._end()

    def _answer(self, conn: socket.socket, line: str) -> bool:
        rewrite = self.heard(line)
        tag = SENT_TAG.search(line)
        answer = f"<{tag.group(1)}:".encode() if tag else b""
        jump = line.startswith("kexec -x -e;")  # the shell that jumps may never get control back
        if answer and not jump and answer not in self.log[self.pos:] and answer not in self.elsewhere:
            self.divergence = f"the flow sent {line!r}, which the recorded run never answered"
            return False
        chunk = self._next()
        conn.sendall(rewrite(chunk) if rewrite else chunk)
        return self.pos < len(self.log)

    def _end(self) -> None:
        """QEMU exited: the line closes (EOF for the console)."""
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.ended.set()

    def close(self) -> None:
        self.ended.set()
        if self.conn is not None:
            self.conn.close()
        self.server.close()


class ReplayMonitor:
    def __init__(self, guest: ReplayGuest) -> None:
        self.guest = guest
        self.commands: list[str] = []

    def cmd(self, name: str, timeout: float = 60.0, **args: Any) -> Any:
        self.commands.append(name)
        if name == "dump-guest-memory":
            path = Path(str(args["protocol"]).removeprefix("file:"))
            kept = self.guest.replay.run.path / f"{path.stem.replace('snapshot-', 'kernel-log-', 1)}.elf.gz"
            if path.stem.startswith("snapshot-silent-") and kept.is_file():
                # a silent guest's memory: the recording kept its kernel log's pages (a dump
                # of its own, lab.memory.kernel_log), which the flow reads as it read the dump
                path.write_bytes(gzip.decompress(kept.read_bytes()))
            else:
                replay = self.guest.replay
                replay.memory.dump(path, replay.sc.a_ram_end, replay.damage.get(path.stem))
        return {}

    def hmp(self, command: str) -> str:
        self.commands.append(f"hmp {command}")
        return ""

    def events_named(self, name: str) -> list[dict[str, Any]]:
        if not self.guest.serial_ended:
            return []
        return [e for e in self.guest.replay.run.events(self.guest.name) if e.get("event") == name]


class ReplayDebugger:
    """Stops at the breakpoint only where the recorded run did (it took the snapshot)."""

    def __init__(self, guest: ReplayGuest, log_path: Path) -> None:
        self.guest, self.log_path = guest, log_path
        self.address = 0

    def attach(self) -> None:
        self.log_path.write_text("replay: attached\n")

    def break_at(self, address: int) -> str:
        self.address = address
        return "1"

    def break_at_kernel(self, address: int) -> str:
        self.address = address
        return "2"

    def register(self, name: str) -> int:
        """The stack pointer the recorded run read there (its notes say it), in order."""
        values = self.guest.replay.stack_pointers.setdefault(self.guest.name,
                                                             self.guest.replay.run.stack_pointers(self.guest.name))
        return values.pop(0) if values else 0

    def resume(self) -> None:
        pass

    def wait_stopped(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        if self.guest.replay.next_stop(self.guest.name):
            return {"reason": "breakpoint-hit", "frame": {"addr": f"{self.address:#x}"}}
        raise TimeoutError(f"the guest did not reach the breakpoint within {timeout:.0f} s (as recorded)")

    def delete(self, number: str) -> None:
        pass

    def detach(self) -> None:
        pass

    def close(self) -> None:
        pass


class ReplayGuest:
    """One machine of the recorded run (lab.guest.GuestVM)."""

    def __init__(self, replay: Replay, name: str, spec: MachineSpec, files: BootFiles, run_dir: Path) -> None:
        self.replay, self.name, self.spec, self.files = replay, name, spec, files
        self.console_log = run_dir / f"console-{name}.log"
        self.stderr_log = run_dir / f"qemu-{name}.log"
        self.qmp_log = run_dir / "qmp.log"
        self._console: Console | None = None
        self._monitor = ReplayMonitor(self)
        self.serial: SerialReplay | None = None

    def __enter__(self) -> ReplayGuest:
        self.files.cpu_reset_log.write_bytes(b"")
        others = b"".join(self.replay.run.console(vm) for vm in self.replay.run.machines() if vm != self.name)
        self.serial = SerialReplay(self.files.serial_socket, self.replay.run.console(self.name), self.replay.heard, others)
        self._console = Console(self.files.serial_socket, self.console_log, self.name)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.serial is not None:
            if self.serial.divergence:
                self.replay.divergences.append(f"{self.name}: {self.serial.divergence}")
            self.serial.close()
        if self._console is not None:
            self._console.close()
        self._exited()

    @property
    def console(self) -> Console:
        if self._console is None:
            raise GuestError(f"{self.name}: not started")
        return self._console

    @property
    def has_console(self) -> bool:
        return self._console is not None

    @property
    def monitor(self) -> ReplayMonitor:
        return self._monitor

    @property
    def has_monitor(self) -> bool:
        return self._console is not None

    @property
    def serial_ended(self) -> bool:
        return self.serial is not None and self.serial.ended.is_set()

    def running(self) -> bool:
        return self.serial is not None and not self.serial_ended

    def halted(self) -> bool:
        """As QEMU holds a machine that ended by itself: the recording's console ended with
        a SHUTDOWN the guest caused (its memory is the replay's synthetic memory)."""
        return self.serial_ended and any((e.get("data") or {}).get("reason") not in HOST_REASONS
                                         for e in self.monitor.events_named("SHUTDOWN"))

    def killed_by(self) -> str | None:
        """A recorded machine ended as recorded: by its guest or by the lab."""
        return None

    def wait_exit(self, timeout: float) -> VMExit:
        assert self.serial is not None
        if not self.serial.ended.wait(min(timeout, 5.0)):
            raise GuestError(f"{self.name}: the recorded machine did not exit here")
        self._exited()
        return VMExit(0, self.monitor.events_named("SHUTDOWN"), triple_fault_in(self.files.cpu_reset_log))

    def _exited(self) -> None:
        """What QEMU had written to its cpu_reset log by the time it exited."""
        if not self.files.cpu_reset_log.stat().st_size:
            self.files.cpu_reset_log.write_bytes(self.replay.run.cpu_reset(self.name))

    def debugger(self, log_path: Path) -> ReplayDebugger:
        return ReplayDebugger(self, log_path)


class Replay:
    """One recorded run replayed: makes the flow's machines (a lab.guest.GuestFactory)."""

    def __init__(self, run_dir: Path, scenario: Scenario, disk: Path,
                 damage: dict[str, Callable[[dict[int, bytes]], None]] | None = None) -> None:
        self.run, self.sc, self.disk = RecordedRun(run_dir), scenario, disk
        self.damage = damage or {}  # snapshot file stem -> what to do to A's pages in that dump
        self.divergences: list[str] = []
        self.heard_lines: list[str] = []
        flow = scenario.flow
        a_end = scenario.a_ram_end
        assert a_end - MEMORY_SPAN > flow.b_window[1], "the synthetic memory must lie above B's window"
        self.memory = Memory(a_end - MEMORY_SPAN, scenario.kernel.arch)
        self.memory.load_kexec_image(run_dir / "System.map")
        self.stops: dict[str, list[bool]] = {}
        self.stack_pointers: dict[str, list[int]] = {}
        self.work = Path(tempfile.mkdtemp(prefix="kjreplay-"))

    def __call__(self, name: str, spec: MachineSpec, files: BootFiles, accel: str, run_dir: Path) -> ReplayGuest:
        return ReplayGuest(self, name, spec, files, run_dir)

    def next_stop(self, vm: str) -> bool:
        """Did the recorded guest stop at the breakpoint the flow set now?"""
        stops = self.stops.setdefault(vm, self.run.gdb_stops(vm))
        return stops.pop(0) if stops else False

    def heard(self, line: str) -> Callable[[bytes], bytes] | None:
        """A line the flow sent: its effect on A's memory and the disk; a rewrite of its
        recorded answer where that answer reports on a file the replay made."""
        self.heard_lines.append(line)
        self.memory.heard(line)
        m = re.match(r"time (?:cp /proc/vmcore|makedumpfile .*/proc/vmcore) /mnt/(\S+?);", line)
        if m:
            local = self.memory.write(self.work / m.group(1))
            write_to_disk(self.disk, local, m.group(1))
        m = re.match(r"kj-proof crc32 /mnt/(\S+?);", line)
        if m:
            crc = crc32_file(read_from_disk(self.disk, m.group(1), self.work / "crc32.tmp"))
            return lambda chunk: re.sub(rb"crc32 0x[0-9a-f]{8}\b", f"crc32 {crc:#010x}".encode(), chunk)
        return None

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def replay_run(recorded: Path, scenario: Scenario, run_dir: Path, sock_dir: Path,
               damage: dict[str, Callable[[dict[int, bytes]], None]] | None = None) -> tuple[RunResult, Replay]:
    """Run the scenario's flow against the recorded run, as lab.runner would after the
    artifacts step: the verdict, then the scenario's expectation (XFAIL for a known bug).
    `damage`: snapshot stem -> a change to A's pages in that memory dump only."""
    run = RecordedRun(recorded)
    result = RunResult(run_id=run.record["run_id"], scenario=scenario.name, scenario_path=str(scenario.path),
                       flow=scenario.flow.name, started=run.record["started"],
                       expected_verdict=scenario.expect.verdict, quirks=dict(scenario.quirks))
    rec = Recorder(result, run_dir)
    disk = make_disk(run_dir / "hibernation-disk.img", size_mib=scenario.flow.disk_mib)
    art = FlowArtifacts(kernel=recorded / "bzImage", kernel_a=recorded / "bzImage", initrd_a=recorded / "initrd-A",
                        initrd_c=recorded / "initrd", disk=disk,
                        system_map=recorded / "System.map")  # kept: the symbols the run's evidence names
    replay = Replay(recorded, scenario, disk, damage)
    try:
        flow: FlowContext = FLOWS[scenario.flow.name](scenario, art, run_dir, sock_dir, rec, "tcg", guests=replay)
        run_flow(flow)
        judge(result, scenario, run_dir)
        rec.save()
    finally:
        replay.close()
    return result, replay
