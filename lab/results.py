"""The record of a run: plain dataclasses, saved as results.json after every step so
that a run killed at any point still leaves what it had done."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .errors import BadRunRecord
from .memory.record import MemoryRecord
from .verdict import Verdict

SCHEMA_VERSION = 1


@dataclass
class Command:
    command: str
    status: int | None
    output: str
    seconds: float


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Step:
    name: str
    title: str
    seed_step: str  # the step of seed 004 this implements, e.g. "5" or "-" for lab-only steps
    vm: str  # which QEMU process (console log) it ran on: "A-B" or "C-A"
    started: float
    ended: float | None = None
    outcome: str = "running"  # running | ok | failed | skipped | interrupted
    message: str = ""
    commands: list[Command] = field(default_factory=list)
    console_start: int = 0  # byte offsets into console-<vm>.log
    console_end: int = 0
    cpu_reset_start: int = 0  # byte offsets into cpu-reset-<vm>.log (QEMU's -d cpu_reset)
    cpu_reset_end: int = 0

    @property
    def seconds(self) -> float:
        return (self.ended or time.time()) - self.started


@dataclass
class RunResult:
    run_id: str
    scenario: str
    scenario_path: str
    flow: str
    started: float
    ended: float | None = None
    verdict: Verdict = Verdict.RUNNING
    reason: str = ""
    failed_step: str = ""
    evidence: list[str] = field(default_factory=list)
    expected_verdict: Verdict = Verdict.PASS
    observed_verdict: Verdict | None = None  # before the expectation is applied (XFAIL/XPASS)
    signature_matched: bool | None = None
    steps: list[Step] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    quirks: dict[str, bool] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path relative to the run dir
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    memory: MemoryRecord = field(default_factory=MemoryRecord)  # lab.memory findings and the memory map
    # Kernel logs read from memory snapshots (lab.memory.kernel_log), for guests that went silent
    kernel_logs: list[dict[str, Any]] = field(default_factory=list)

    def unearned_pass(self) -> list[str]:
        """Why this record cannot carry PASS; empty when it can. PASS means every step ended
        ok and every check held - the checks in `checks` and the memory checks whose records
        say `ok`. A flow that ends without a failure while one of these stands is a bug of
        the lab, and must not read as a PASS."""
        doubts = [f"step {s.name}: {s.outcome}" for s in self.steps if s.outcome != "ok"]
        doubts += [f"check {c.name} did not hold: {c.detail}" for c in self.checks if not c.ok]
        doubts += [f"memory {path}: {summary}" for path, summary in _not_ok(self.memory.to_json(), "memory")]
        return doubts

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory"] = self.memory.to_json()
        data["schema"] = SCHEMA_VERSION
        for step, raw in zip(self.steps, data["steps"]):
            raw["seconds"] = round(step.seconds, 3)
        return data


def _not_ok(node: Any, path: str) -> list[tuple[str, str]]:
    """(path, summary) of every record under `node` that says `"ok": false`."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if node.get("ok") is False:
            found.append((path, str(node.get("summary", "ok is false"))))
        for key, value in node.items():
            found += _not_ok(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _not_ok(value, f"{path}[{i}]")
    return found


def save(result: RunResult, run_dir: Path) -> Path:
    """Write results.json atomically (a reader never sees half a file)."""
    return atomic.write_text(run_dir / "results.json", json.dumps(result.to_json(), indent=2) + "\n")


def load(run_dir: Path) -> RunResult:
    """The record in run_dir/results.json. A file that is not one (truncated, not JSON,
    another shape) raises BadRunRecord naming it and what is wrong; a missing one OSError."""
    path = run_dir / "results.json"
    text = path.read_text(errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRunRecord(str(path), f"not JSON ({e.msg} at line {e.lineno} column {e.colno}; "
                           f"{len(text)} bytes{', truncated?' if e.pos >= len(text.rstrip()) else ''})") from None
    if not isinstance(data, dict):
        raise BadRunRecord(str(path), f"a JSON {type(data).__name__}, not an object")
    try:
        return _from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        missing = f"no {e.args[0]!r}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise BadRunRecord(str(path), missing) from None


def _from_json(data: dict[str, Any]) -> RunResult:
    data = dict(data)
    data.pop("schema", None)
    steps = []
    for raw in data.pop("steps"):
        raw.pop("seconds", None)
        raw["commands"] = [Command(**c) for c in raw["commands"]]
        steps.append(Step(**raw))
    checks = [Check(**c) for c in data.pop("checks")]
    data["verdict"] = Verdict.parse(data.get("verdict", "ERROR"))
    data["expected_verdict"] = Verdict.parse(data.get("expected_verdict", "PASS"))
    data["memory"] = MemoryRecord.from_json(data.get("memory") or {})
    observed = data.get("observed_verdict")
    data["observed_verdict"] = Verdict.parse(observed) if observed else None
    return RunResult(steps=steps, checks=checks, **data)
