"""Wall time of one hibernate/resume cycle with cached artifacts, and each step's share.

    .venv/bin/python benchmarks/cycle.py [--scenario FILE] [--repeat N]

The first repetition builds or finds the artifacts; its artifact step is reported
separately so the cycle figure is what the guests take.
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
from lab.runner import run_scenario  # noqa: E402
from lab.scenario import load_scenario  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", type=Path, default=SCENARIOS_DIR / "i386-hibernate.toml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)  # connect chatter
    sc = load_scenario(args.scenario)
    per_step: dict[str, list[float]] = {}
    walls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kjlab-bench-") as tmp:
        for i in range(args.repeat):
            t0 = time.monotonic()
            outcome = run_scenario(sc, Path(tmp))
            wall = time.monotonic() - t0
            res = outcome.result
            if res.verdict != "PASS":
                print(f"run {i + 1}: {res.verdict} ({res.reason}); benchmark needs a PASS", file=sys.stderr)
                return 1
            artifacts = sum(s.seconds for s in res.steps if s.name == "artifacts")
            walls.append(wall - artifacts)
            for s in res.steps:
                per_step.setdefault(s.name, []).append(s.seconds)
            print(f"run {i + 1}: cycle {wall - artifacts:6.2f} s (+ artifacts {artifacts:5.2f} s)")
    print(f"\n{'step':<24}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, values in per_step.items():
        print(f"{name:<24}{statistics.median(values):10.2f}{min(values):10.2f}{max(values):10.2f}")
    print(f"\ncycle wall time without artifacts: median {statistics.median(walls):.2f} s, "
          f"min {min(walls):.2f} s, max {max(walls):.2f} s over {len(walls)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
