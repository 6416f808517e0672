"""Wall time of one hibernate/resume cycle with cached artifacts, each step's share, and
the lab's own share of the cycle next to the guests' work.

    .venv/bin/python benchmarks/cycle.py [--scenario FILE] [--repeat N]

The lab's share is what the lab adds to what the ten steps need anyway: memory
snapshots, GDB stopping the guest at departure and return, the host's checks of the
image and of the round trip, and the guest-side checks (A's preparation and checks, the
jump marks, C's hash of the image). The first repetition builds or finds the artifacts;
its artifact step is reported apart so the cycle figure is what the guests take.

Side by side, on the resumed kernel A of the last repetition (its `user-checks` step,
left out of the cycle figures): the guest-side checks the lab used before kj-proof
(busybox dd from /dev/urandom + sha256sum, md5sum of the saved image) against kj-proof's,
and a memory snapshot of the whole machine against one of A's RAM only.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import SCENARIOS_DIR  # noqa: E402
from lab.flows.base import Recorder  # noqa: E402
from lab.guest import GuestVM  # noqa: E402
from lab.results import RunResult  # noqa: E402
from lab.runner import run_scenario  # noqa: E402
from lab.scenario import Scenario, load_scenario  # noqa: E402
from lab.verdict import Verdict  # noqa: E402

GUEST_CHECK_STEPS = ("prepare-A", "verify-A")
GUEST_CHECK_COMMANDS = ("kj-proof crc32 ", "echo 'kjlab: jump-out", "grep MemTotal")


def lab_share(res: RunResult) -> dict[str, float]:
    """Seconds of the cycle the lab spends on its own proof, by kind."""
    parts = {"snapshots": 0.0, "GDB": 0.0, "host checks": 0.0, "guest checks": 0.0}
    for step in res.steps:
        if step.name in ("artifacts", "user-checks"):
            continue
        if step.name.startswith("snapshot-"):
            parts["snapshots"] += step.seconds
        elif not step.vm:
            parts["host checks"] += step.seconds
        elif step.name in GUEST_CHECK_STEPS:
            parts["guest checks"] += step.seconds
        else:
            for cmd in step.commands:
                if cmd.command.startswith("stopped at"):
                    parts["snapshots"] += cmd.seconds
                elif cmd.command.startswith("GDB:"):
                    parts["GDB"] += cmd.seconds
                elif cmd.command.startswith(GUEST_CHECK_COMMANDS):
                    parts["guest checks"] += cmd.seconds
    return parts


# (what, the old way, the new way): shell commands on the resumed A; {image} is the saved image
SIDE_BY_SIDE = (
    ("A's proof file: make it (4 MiB)",
     "dd if=/dev/urandom of=/tmp/bench-old bs=1024 count=4096 2>/dev/null && sha256sum /tmp/bench-old > /tmp/bench.sha256",
     "kj-proof fill /tmp/bench-new 4096 0x1234"),
    ("A's proof file: check it",
     "sha256sum -c /tmp/bench.sha256",
     "kj-proof check /tmp/bench-new 4096 0x1234"),
    ("C's check of the image ({size} MB)", "md5sum {image}", "kj-proof crc32 {image}"),
)


def side_by_side(vm: GuestVM, rec: Recorder, sc: Scenario, rows: list[tuple[str, float, float]]) -> None:
    """Time the old and the new way of each guest check on A, twice each, alternating."""
    def timed(command: str) -> float:
        t0 = time.monotonic()
        result = rec.run(vm.console, command, 120)
        if result.status != 0:
            raise RuntimeError(f"{command!r} failed on A (exit {result.status}): {result.output!r}")
        return time.monotonic() - t0

    rec.run(vm.console, "kj-mount-disk /dev/vda", 30)
    size = rec.run(vm.console, "wc -c < /mnt/dump.elf", 30).output.split()[0]
    timed("cat /mnt/dump.elf > /dev/null")  # the page cache holds it for both ways
    for what, old, new in SIDE_BY_SIDE:
        old_s: list[float] = []
        new_s: list[float] = []
        for _ in range(2):
            old_s.append(timed(old.format(image="/mnt/dump.elf")))
            new_s.append(timed(new.format(image="/mnt/dump.elf")))
        rows.append((what.format(size=int(size) // 10**6), min(old_s), min(new_s)))
    rec.run(vm.console, "rm -f /tmp/bench-old /tmp/bench-new /tmp/bench.sha256; umount /mnt", 30)
    snap = rec.run_dir / "bench-snapshot.elf"
    full: list[float] = []
    only_a: list[float] = []
    ram_end = sc.a_ram_end
    for _ in range(2):
        for args, into in (({}, full), ({"begin": 0, "length": ram_end}, only_a)):
            vm.monitor.cmd("stop")
            t0 = time.monotonic()
            vm.monitor.cmd("dump-guest-memory", timeout=300, paging=False, protocol=f"file:{snap}", **args)
            into.append(time.monotonic() - t0)
            vm.monitor.cmd("cont")
            snap.unlink()
    rows.append((f"a memory snapshot ({sc.machine.memory_mib} MiB machine, A has {sc.flow.a_mem})", min(full),
                 min(only_a)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", type=Path, default=SCENARIOS_DIR / "i386-hibernate.toml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)  # connect chatter
    sc = load_scenario(args.scenario)
    per_step: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}
    walls: list[float] = []
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="kjlab-bench-") as tmp:
        for i in range(args.repeat):
            last = i == args.repeat - 1
            t0 = time.monotonic()
            outcome = run_scenario(sc, Path(tmp), keep="failed",
                                   on_resumed=(lambda vm, rec: side_by_side(vm, rec, sc, rows)) if last else None)
            wall = time.monotonic() - t0
            res = outcome.result
            if res.verdict is not Verdict.PASS:
                print(f"run {i + 1}: {res.verdict} ({res.reason}); benchmark needs a PASS", file=sys.stderr)
                return 1
            artifacts = sum(s.seconds for s in res.steps if s.name == "artifacts")
            side = sum(s.seconds for s in res.steps if s.name == "user-checks")
            cycle = wall - artifacts - side
            walls.append(cycle)
            for s in res.steps:
                if s.name != "user-checks":
                    per_step.setdefault(s.name, []).append(s.seconds)
            parts = lab_share(res)
            for kind, seconds in parts.items():
                shares.setdefault(kind, []).append(seconds)
            shares.setdefault("lab total", []).append(sum(parts.values()))
            print(f"run {i + 1}: cycle {cycle:6.2f} s (+ artifacts {artifacts:5.2f} s), "
                  f"lab's share {sum(parts.values()):5.2f} s = {100 * sum(parts.values()) / cycle:4.1f} %")
    print(f"\n{'step':<24}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, values in per_step.items():
        print(f"{name:<24}{statistics.median(values):10.2f}{min(values):10.2f}{max(values):10.2f}")
    cycle = statistics.median(walls)
    print(f"\n{'the lab':<24}{'median s':>10}{'% cycle':>10}")
    for kind, values in shares.items():
        print(f"{kind:<24}{statistics.median(values):10.2f}{100 * statistics.median(values) / cycle:10.1f}")
    guest = cycle - statistics.median(shares["lab total"])
    print(f"{'the guests (the rest)':<24}{guest:10.2f}{100 * guest / cycle:10.1f}")
    print(f"\n{'side by side on the resumed A':<52}{'old s':>8}{'new s':>8}")
    for what, old_s, new_s in rows:
        print(f"{what:<52}{old_s:8.2f}{new_s:8.2f}")
    print(f"\ncycle wall time without artifacts: median {cycle:.2f} s, "
          f"min {min(walls):.2f} s, max {max(walls):.2f} s over {len(walls)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
