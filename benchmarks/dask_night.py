"""Cells per hour of a real night on a Dask cluster of this machine, with one worker and
with two (one VM slot each; the kernel cache warm). The matrix: the 6.1 row of the
nightly (six machines, the nightly's kernel), or --matrix.

    flock /work/qemu.lock .venv/bin/python benchmarks/dask_night.py --workers 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import SCENARIOS_DIR  # noqa: E402
from lab.executors.dask import DaskExecutor  # noqa: E402
from lab.matrix import load_matrix  # noqa: E402
from lab.nightly import run_night  # noqa: E402
from tests.fake_cluster import local_cluster  # noqa: E402

NIGHTLY = SCENARIOS_DIR / "matrices" / "nightly-i386.matrix.toml"


def row_of_the_nightly(d: Path) -> Path:
    text = NIGHTLY.read_text()
    start, end = text.index('[[kernel]]\nname = "6.12"'), text.index("[[patchset]]")
    path = d / "row.matrix.toml"
    path.write_text(text[:start] + text[end:])  # only the 6.1 kernel: seven cells (six machines, swsusp on one)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--matrix", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kjlab-dask-bench-") as tmp:
        d = Path(tmp)
        matrix = load_matrix(args.matrix or row_of_the_nightly(d))
        for n in args.workers:
            with local_cluster(d / f"cluster-{n}", workers=n, vm=1, own_caches=False) as cluster:
                t0 = time.monotonic()
                night = run_night(matrix, d / f"runs-{n}", record=False,
                                  executor=DaskExecutor(cluster.address, f"file://{d / 'store'}"))
                wall = time.monotonic() - t0
            verdicts = sorted(str(r.verdict) for r in night.records.values())
            print(f"{n} worker(s), 1 VM slot each: {len(night.records)} cells in {wall:.0f} s = "
                  f"{len(night.records) / wall * 3600:.0f} cells/hour; verdicts {verdicts}", flush=True)


if __name__ == "__main__":
    main()
