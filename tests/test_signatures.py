"""Every known bug's signature matches its own recorded logs and no other bug's: an
expected failure is XFAIL only for its own cause. The logs are the failed step's own
texts from real runs (tests/data/bug-logs, written by tests/record_bug_logs.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.expectation import signature_matches
from lab.scenario import Scenario, load_scenario
from lab.verdict import Verdict

LOGS = Path(__file__).parent / "data" / "bug-logs"


@dataclass(frozen=True)
class Recorded:
    step: str
    verdict: str
    text: str


def known_bugs() -> list[Scenario]:
    files = [f for d in ("bugs", "bugs-intermittent", "checks") for f in sorted((SCENARIOS_DIR / d).glob("*.toml"))]
    return [sc for sc in map(load_scenario, files) if sc.expect.verdict is not Verdict.PASS]


def recorded(sc: Scenario) -> Recorded:
    lines = (LOGS / f"{sc.name}.txt").read_text().split("\n")
    head = dict(line[2:].split(": ", 1) for line in lines[:3])
    return Recorded(head["step"], head["verdict"], "\n".join(lines[3:]))


BUGS = known_bugs()
IDS = [sc.name for sc in BUGS]


def test_the_bug_library_has_recorded_logs_for_every_known_bug() -> None:
    missing = [sc.name for sc in BUGS if not (LOGS / f"{sc.name}.txt").is_file()]
    assert not missing, f"no recorded logs (run tests/record_bug_logs.py on a suite run): {missing}"


@pytest.mark.parametrize("sc", BUGS, ids=IDS)
def test_a_signature_matches_its_own_failure(sc: Scenario) -> None:
    rec = recorded(sc)
    assert rec.step == sc.expect.step and rec.verdict == sc.expect.verdict
    assert signature_matches(sc.expect.signature, [rec.text])


# Scenarios whose expected failure is one bug by design: the x86_64 mwait bug's fixed twin
# (fix 0002) gets past the jump to B and then meets the jump-back gap (fix 0003).
SAME_FAILURE = [{"bug-x86_64-smp-mwait-jump-fixed", "bug-x86_64-jump-back-entry-unmapped"},
                # one bug, whether the jump or the user took CPU 1 offline before it
                {"bug-i386-smp-mwait-jump", "bug-i386-smp-mwait-jump-user-offline"}]


@pytest.mark.parametrize("sc", BUGS, ids=IDS)
def test_a_signature_matches_no_other_bugs_logs(sc: Scenario) -> None:
    same = set().union(*(pair for pair in SAME_FAILURE if sc.name in pair))
    others = [o for o in BUGS if o.name != sc.name and o.name not in same]
    wrong = [o.name for o in others if signature_matches(sc.expect.signature, [recorded(o).text])]
    assert not wrong, f"/{sc.expect.signature}/ also matches the logs of {wrong}"
