"""Run directories: made atomically (many runs of one scenario in the same second each get
their own), and always inside the runs root."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab import runner
from lab.errors import ScenarioError
from lab.scenario import load_scenario

SCENARIO = load_scenario(SCENARIOS_DIR / "i386-hibernate.toml")


class FrozenClock:
    """Every run starts in the same second: the race the suffix has to resolve."""

    @staticmethod
    def strftime(fmt: str) -> str:
        return "20240501-120000"


def test_threads_in_the_same_second_get_distinct_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "time", FrozenClock)
    real_exists = Path.exists

    def slow_exists(self: Path, **kw: bool) -> bool:  # widens any check-then-create window
        found = real_exists(self, **kw)
        time.sleep(0.002)
        return found

    monkeypatch.setattr(Path, "exists", slow_exists)
    n = 40
    barrier = threading.Barrier(n)
    got: list[tuple[str, Path]] = []
    errors: list[BaseException] = []

    def make() -> None:
        barrier.wait()
        try:
            got.append(runner.new_run_dir(tmp_path / "runs", SCENARIO))
        except BaseException as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=make) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    dirs = [d for _, d in got]
    assert len(set(dirs)) == n and all(d.is_dir() and d.parent == tmp_path / "runs" for d in dirs)
    assert {run_id for run_id, _ in got} == {d.name for d in dirs}
    assert "20240501-120000-i386-hibernate" in {d.name for d in dirs}
    assert "20240501-120000-i386-hibernate-40" in {d.name for d in dirs}


def test_processes_get_distinct_dirs(tmp_path: Path) -> None:
    script = ("import sys; from pathlib import Path; from lab import SCENARIOS_DIR; from lab.runner import new_run_dir; "
              "from lab.scenario import load_scenario; "
              "sc = load_scenario(SCENARIOS_DIR / 'i386-hibernate.toml'); "
              "print(*(new_run_dir(Path(sys.argv[1]), sc)[1] for _ in range(5)), sep='\\n')")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "runs")], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    dirs = [d for out in outs for d in out]
    assert len(dirs) == 15 and len(set(dirs)) == 15
    assert sorted(str(p) for p in (tmp_path / "runs").iterdir()) == sorted(dirs)


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "", "with space", "x,y", "-dash-first"])
def test_a_name_that_would_leave_the_runs_root_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScenarioError, match="scenario.name"):
        runner.new_run_dir(tmp_path / "runs", replace(SCENARIO, name=name))
    assert not (tmp_path / "escape").exists()
