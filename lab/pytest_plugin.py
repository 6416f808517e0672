"""kjlab as a pytest plugin (registered through the `pytest11` entry point): write your
own checks of a resumed kernel as pytest tests, without editing the lab.

    def test_my_module_survives(kjlab_resumed):
        out, status = kjlab_resumed.guest.run("cat /proc/modules")
        assert status == 0

Fixtures:
- `kjlab_scenario`: the scenario of `--kjlab-scenario FILE` (default: the lab's default
  hibernation scenario), validated.
- `kjlab_resumed`: runs that scenario for real (its flow must hand over the resumed A:
  hibernate, jump-roundtrip) and, once A is back and the lab's own checks held, gives the
  test a `KjlabRun`: `guest.run(cmd) -> (output, status)` on kernel A, the run's live
  `record` and `run_dir`, and `snapshots` (name -> memory snapshot). The run goes on when
  the test ends (the round-trip proof, the report); every command the test sends is in the
  run's record and report, and a failing test's report links to the run directory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, cast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import SCENARIOS_DIR
from .flows.base import Recorder
from .results import RunResult
from .scenario import Scenario, load_scenario
from .guest import GuestVM

if TYPE_CHECKING:
    from .runner import RunOutcome

HANDOVER_TIMEOUT = 3600.0  # a cold run builds kernels first


@dataclass
class Guest:
    """Commands on the resumed kernel A, each recorded in the run (step user-checks)."""

    vm: GuestVM
    rec: Recorder
    timeout: float = 60.0

    def run(self, command: str, timeout: float | None = None) -> tuple[str, int]:
        result = self.rec.run(self.vm.console, command, timeout or self.timeout)
        return result.output, result.status


@dataclass
class KjlabRun:
    guest: Guest
    record: RunResult
    run_dir: Path
    snapshots: dict[str, Path] = field(default_factory=dict)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kjlab", "kjlab: kexec-jump hibernation on real QEMU")
    group.addoption("--kjlab-scenario", type=Path, default=SCENARIOS_DIR / "i386-hibernate.toml",
                    help="the scenario file the kjlab fixtures run (default: %(default)s)")
    group.addoption("--kjlab-runs-dir", type=Path, default=None,
                    help="where kjlab run directories go (default: the lab's reports/runs)")


@pytest.fixture
def kjlab_scenario(request: pytest.FixtureRequest) -> Scenario:
    """The scenario of --kjlab-scenario, validated (lab.scenario.Scenario)."""
    return load_scenario(Path(request.config.getoption("--kjlab-scenario")))


@pytest.fixture
def kjlab_resumed(request: pytest.FixtureRequest, kjlab_scenario: Scenario) -> Iterator[KjlabRun]:
    """A real run of the scenario, paused with kernel A resumed and its checks held:
    guest.run(cmd) -> (output, status) on A, the live record, run_dir, snapshots."""
    from .flows import FLOWS
    from .runner import DEFAULT_RUNS_DIR, RunOutcome, run_scenario

    if not FLOWS[kjlab_scenario.flow.name].hands_over_resumed_a:
        pytest.fail(f"{kjlab_scenario.path}: flow {kjlab_scenario.flow.name!r} does not hand over a resumed A; "
                    f"use one that does: {', '.join(n for n, f in FLOWS.items() if f.hands_over_resumed_a)}")
    runs_dir = request.config.getoption("--kjlab-runs-dir") or DEFAULT_RUNS_DIR
    handed: dict[str, object] = {}
    ready, done = threading.Event(), threading.Event()
    outcome: list[RunOutcome] = []
    failure: list[BaseException] = []

    def on_resumed(vm: GuestVM, rec: Recorder) -> None:
        handed.update(vm=vm, rec=rec)
        ready.set()
        done.wait()  # the test runs its commands now; the flow goes on when it is done

    def run() -> None:
        try:
            outcome.append(run_scenario(kjlab_scenario, runs_dir, on_resumed=on_resumed))
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread below
            failure.append(e)
        finally:
            ready.set()

    # The run's own thread starts the QEMU processes and lives as long as they do.
    runner = threading.Thread(target=run, name="kjlab-run", daemon=True)
    runner.start()
    ready.wait(HANDOVER_TIMEOUT)
    if "vm" not in handed:
        runner.join(60)
        where = _where(outcome)
        request.node.add_report_section("setup", "kjlab", where)
        reason = f"{outcome[0].result.verdict}: {outcome[0].result.reason}" if outcome else repr(failure)
        pytest.fail(f"kernel A did not come back, so there is nothing to test: {reason}\n{where}")
    rec = handed["rec"]
    assert isinstance(rec, Recorder)
    vm = cast(GuestVM, handed["vm"])  # what on_resumed was handed
    snapshots = {str(s["name"]): rec.run_dir / str(s["path"]) for s in rec.result.snapshots}
    request.node.add_report_section("call", "kjlab", f"run directory: {rec.run_dir}")
    try:
        yield KjlabRun(Guest(vm, rec), rec.result, rec.run_dir, snapshots)
    finally:
        done.set()
        runner.join(HANDOVER_TIMEOUT)
        request.node.add_report_section("teardown", "kjlab", _where(outcome))
    if outcome and not outcome[0].result.verdict.good:
        res = outcome[0].result
        pytest.fail(f"the run went on to {res.verdict}: {res.reason}\n{_where(outcome)}")


def _where(outcome: Sequence[RunOutcome]) -> str:
    if not outcome:
        return "the run left no record"
    return f"run directory: {outcome[0].run_dir}\nreport: {outcome[0].report or '(not rendered)'}"
