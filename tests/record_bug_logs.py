"""Record the failed step's own logs of each known-bug scenario from real runs, as test
data for tests/test_signatures.py (every signature against every other bug's logs).

    .venv/bin/python tests/record_bug_logs.py RUNS_DIR [RUNS_DIR ...]

RUNS_DIR holds run directories (e.g. a suite directory of `kjlab run scenarios/bugs/`).
For each run that showed the failure its scenario expects (that verdict, in that step),
the texts its expectation is matched against (lab.expectation.step_texts) are written to
tests/data/bug-logs/<scenario>.txt; the tail of a long QEMU cpu_reset slice is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.expectation import step_texts  # noqa: E402
from lab.results import load  # noqa: E402
from lab.verdict import Verdict  # noqa: E402

OUT = Path(__file__).parent / "data" / "bug-logs"
MAX_LINES = 400  # per text: the cause is at the end of a step's logs


def record(run_dir: Path) -> Path | None:
    res = load(run_dir)
    expected, observed = res.expected_verdict, res.observed_verdict or res.verdict
    if expected is Verdict.PASS or observed is not expected:
        return None
    texts = step_texts(run_dir, res, res.failed_step)
    kept = ["\n".join(t.splitlines()[-MAX_LINES:]) for t in texts]
    out = OUT / f"{res.scenario}.txt"
    out.write_text(f"# step: {res.failed_step}\n# verdict: {res.observed_verdict}\n# run: {run_dir.name}\n"
                   + "\n".join(kept) + "\n")
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for root in map(Path, sys.argv[1:]):
        for results in sorted(root.rglob("results.json")):
            out = record(results.parent)
            if out:
                print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
