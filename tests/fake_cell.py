"""A stand-in for `kjlab run SCENARIO --runs-dir DIR` in matrix tests: a real process that
makes a run directory, writes a real results.json (lab.results) and behaves as a cell
would, without QEMU.

    python tests/fake_cell.py MODE SCENARIO_FILE RUNS_DIR MARKER_DIR

MODE: pass | panic | xfail | slow (writes MARKER_DIR/<scenario>.starts, a line "pid ppid" per
start, then passes after SLOW_SECONDS) | leftover (leaves a `sleep` behind in its process group) |
hang (starts a fake QEMU with lab.lifetime.die_with_parent, as lab.vm will, then waits;
SIGTERM writes INTERRUPTED and exits 130, as lab.runner does) | stubborn (hang, but it and
its fake QEMU ignore SIGTERM: only SIGKILL ends them). hang and stubborn write
MARKER_DIR/<scenario>.started (the cell's pid) and <scenario>.qemu (the fake QEMU's pid).
MODE@VERSION (e.g. ``pass@6.1.192-3``): the run's kernel is of that Debian source version
(``provenance.kernel``, as lab.artifacts.kernel records it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's lab

from lab.lifetime import die_with_parent
from lab.results import RunResult, Step, save
from lab.verdict import Verdict

SLOW_SECONDS = 8.0


def main(mode: str, scenario_file: str, runs_dir: str, marker_dir: str) -> None:
    mode, _, version = mode.partition("@")
    sc = tomllib.loads(Path(scenario_file).read_text())
    name = sc["scenario"]["name"]
    run_dir = Path(runs_dir) / f"20240501-120000-{name}"
    run_dir.mkdir(parents=True)
    result = RunResult(run_id=run_dir.name, scenario=name, scenario_path=scenario_file, flow=sc["flow"]["name"],
                       started=time.time(), expected_verdict=Verdict(sc["expect"]["verdict"]))
    if version:
        result.provenance["kernel"] = {"source": sc["kernel"]["source"], "source_version": version,
                                       "release": version.rsplit("-", 1)[0]}
    save(result, run_dir)

    def jumps(ok: int, failed: int = 0) -> None:
        # the jump-to-B steps a run of the scenario's flow makes (cycles: flow.cycles of them)
        for i in range(1, ok + failed + 1):
            outcome = "ok" if i <= ok else "failed"
            result.steps.append(Step(f"jump-to-B-{i}", "kexec -e in A", "6", "A-B", time.time(), time.time(), outcome))
            if outcome == "failed":
                result.failed_step = f"jump-to-B-{i}"

    def finish(verdict: Verdict, reason: str, code: int) -> None:
        result.verdict = result.observed_verdict = verdict
        result.reason, result.ended = reason, time.time()
        save(result, run_dir)
        sys.exit(code)

    cycles = int(sc["flow"].get("cycles", 1))
    if mode == "pass":
        jumps(cycles)
        finish(Verdict.PASS, "kernel A resumed and every check held", 0)
    if mode == "panic":
        jumps(cycles - 1, failed=1)
        finish(Verdict.PANIC, "Kernel panic - not syncing", 1)
    if mode == "xfail":  # a known bug that showed at the last jump to B, as expected
        jumps(cycles - 1, failed=1)
        result.verdict, result.observed_verdict = Verdict.XFAIL, Verdict.TRIPLE_FAULT
        result.reason, result.ended = "triple fault (expected failure TRIPLE_FAULT seen in jump-to-B)", time.time()
        save(result, run_dir)
        sys.exit(0)
    if mode == "slow":
        with open(Path(marker_dir) / f"{name}.starts", "a") as f:
            f.write(f"{os.getpid()} {os.getppid()}\n")
        time.sleep(SLOW_SECONDS)
        finish(Verdict.PASS, "kernel A resumed and every check held", 0)
    if mode == "leftover":
        helper = subprocess.Popen(["sleep", "300"])  # forgotten: still in the cell's group
        (run_dir / "leftover.pid").write_text(str(helper.pid))
        finish(Verdict.PASS, "kernel A resumed and every check held", 0)
    assert mode in ("hang", "stubborn"), mode
    markers = Path(marker_dir)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the fake QEMU below
    else:
        def interrupted(signum: int, frame: FrameType | None) -> None:
            finish(Verdict.INTERRUPTED, f"interrupted (signal {signum}); partial results", 130)

        signal.signal(signal.SIGTERM, interrupted)
    qemu = subprocess.Popen(["sleep", "300"], preexec_fn=die_with_parent)
    (markers / f"{name}.qemu").write_text(str(qemu.pid))
    (markers / f"{name}.started").write_text(str(os.getpid()))
    time.sleep(120)
    finish(Verdict.HANG, "the guest stopped answering", 1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
