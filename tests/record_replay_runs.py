"""Record the real runs tests/test_replay.py replays, into tests/data/runs/<name>/. Run it
when a flow's commands or steps change (the replay compares them with the recording):

    .venv/bin/python tests/record_replay_runs.py [NAME ...]     (default: every replay)

Each scenario of tests/test_replay.py's REPLAYS is run for real with `kjlab run`; kept:
results.json, the console logs, qmp.log, the kernel config of a passing hibernate run, and for
a failure the tail of the cpu_reset log, the System.map lines its evidence names (and
the two a kernel log read from memory needs) and that log's pages (gzipped; the replay
serves them as the silent guest's memory dump).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import SCENARIOS_DIR  # noqa: E402
from lab.cache import cache_root  # noqa: E402
from lab.results import load  # noqa: E402
from tests.test_replay import REPLAYS, RUNS  # noqa: E402
from tests.trim_system_map import main as trim_system_map  # noqa: E402

CPU_RESET_TAIL = 400  # lines: the fault is at the end


def record(name: str, runs_dir: Path) -> Path:
    subprocess.run([sys.executable, "-m", "lab.cli", "run", "--runs-dir", str(runs_dir), "--keep", "all",
                    str(SCENARIOS_DIR / REPLAYS[name])], cwd=ROOT, check=False)
    (run_dir,) = [p.parent for p in runs_dir.glob("*/results.json")]
    out = RUNS / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for path in [run_dir / "results.json", run_dir / "qmp.log", *run_dir.glob("console-*.log")]:
        shutil.copy2(path, out / path.name)
    res = load(run_dir)
    if res.flow == "hibernate" and not res.failed_step and (run_dir / "kernel.config").is_file():
        shutil.copy2(run_dir / "kernel.config", out / "kernel.config")
    kernel = res.provenance.get("kernel_a") or res.provenance.get("kernel", {})  # A's symbols: what the flow reads
    system_map = cache_root() / "kernel" / str(kernel.get("cache_key")) / "System.map"
    if res.flow == "hibernate" and system_map.is_file():  # the symbols the last leg of the proof reads
        trim_system_map(out, system_map)
    if res.failed_step:
        for log in run_dir.glob("cpu-reset-*.log"):
            lines = log.read_text(errors="replace").splitlines()[-CPU_RESET_TAIL:]
            (out / log.name).write_text("\n".join(lines) + "\n")
        if system_map.is_file():
            trim_system_map(out, system_map)
        for pages in run_dir.glob("kernel-log-*.elf"):  # a silent guest's log, read from memory
            (out / f"{pages.name}.gz").write_bytes(gzip.compress(pages.read_bytes(), 9))
    return out


def main() -> int:
    names = sys.argv[1:] or list(REPLAYS)
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"kjrec-{name}-") as tmp:
            out = record(name, Path(tmp))
            print(f"{name}: {load(out).verdict} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
