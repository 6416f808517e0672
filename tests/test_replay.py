"""Every flow, offline: a real run of the lab replayed through a fake guest (tests/replay.py).
The flow's steps, commands, verdict and record must come out as they did on QEMU."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.results import RunResult
from lab.scenario import load_scenario
from lab.verdict import Verdict
from tests.replay import RecordedRun, Replay, replay_run

RUNS = Path(__file__).resolve().parent / "data" / "runs"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kjr-") as d:  # short: UNIX socket paths
        yield Path(d)


def replay(name: str, scenario: str, tmp_path: Path, sock_dir: Path) -> tuple[RunResult, Replay, RecordedRun]:
    recorded = RunDir = RUNS / name
    result, rep = replay_run(RunDir, load_scenario(SCENARIOS_DIR / scenario), tmp_path, sock_dir)
    assert rep.divergences == [], rep.divergences
    return result, rep, RecordedRun(recorded)


def same_steps_and_commands(result: RunResult, rec: RecordedRun) -> None:
    """The replay ran the recorded run's steps (less the artifacts step, which the replay
    does not run), with their outcomes, and sent the same commands in each."""
    recorded = [(n, o) for n, o in rec.steps() if n != "artifacts"]
    assert [(s.name, s.outcome) for s in result.steps] == recorded
    for step in result.steps:
        assert [c.command for c in step.commands] == rec.commands(step.name), step.name


def test_hibernate_pass(tmp_path: Path, sock_dir: Path) -> None:
    result, rep, rec = replay("i386-hibernate-pass", "i386-hibernate.toml", tmp_path, sock_dir)
    assert result.verdict is Verdict.PASS, (result.reason, result.evidence)
    same_steps_and_commands(result, rec)
