"""The one Verdict type: kinds, exit codes (git bisect run), JUnit and KCIDB, and the
expectation rules that turn a failure into XFAIL only for its own cause."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from lab.expectation import apply_expectation
from lab.flows.base import Recorder
from lab.memory.record import ResumeCheck
from lab.results import Check, Command, RunResult
from lab.runner import run_flow
from lab.verdict import EXPECTABLE, Kind, Verdict, exit_code

FAILURES = [v for v in Verdict if v.kind is Kind.FAILURE]


def test_every_verdict_has_a_kind_meaning_colour_and_mappings() -> None:
    for v in Verdict:
        assert v.meaning and v.css and v.junit in ("pass", "failure", "error")
        assert v.kcidb in ("PASS", "FAIL", "ERROR", "MISS")
    assert {v for v in Verdict if v.good} == {Verdict.PASS, Verdict.XFAIL}
    assert Verdict.CORRUPT_IMAGE in FAILURES and Verdict.CORRUPT_IMAGE.junit == "failure"  # the old drift
    assert Verdict.HOST_IO_ERROR.kind is Kind.LAB_ERROR and Verdict.HOST_IO_ERROR.exit_code == 125
    assert Verdict.XPASS.is_failure and Verdict.XPASS.kcidb == "FAIL"
    assert Verdict.INTERRUPTED.kcidb == "MISS" and Verdict.RUNNING.junit == "error"
    assert Verdict.parse("NO_SUCH_VERDICT") is Verdict.ERROR and Verdict.parse("PANIC") is Verdict.PANIC
    assert Verdict.PASS in EXPECTABLE and Verdict.XPASS not in EXPECTABLE and Verdict.ERROR not in EXPECTABLE


@pytest.mark.parametrize("verdict,code", [(Verdict.PASS, 0), (Verdict.XFAIL, 0), (Verdict.XPASS, 1),
                                          (Verdict.TRIPLE_FAULT, 1), (Verdict.SAVE_FAILED, 1), (Verdict.ERROR, 125),
                                          (Verdict.HOST_IO_ERROR, 125), (Verdict.INTERRUPTED, 130)])
def test_exit_codes(verdict: Verdict, code: int) -> None:
    assert exit_code(verdict, verdict, Verdict.PASS) == code


def test_bisect_exit_codes() -> None:
    # a scenario that expects PASS: any failure is bad, a lab error is skip
    assert exit_code(Verdict.PASS, Verdict.PASS, Verdict.PASS, bisect="regression") == 0
    assert exit_code(Verdict.PANIC, Verdict.PANIC, Verdict.PASS, bisect="regression") == 1
    assert exit_code(Verdict.ERROR, Verdict.ERROR, Verdict.PASS, bisect="regression") == 125
    assert exit_code(Verdict.HOST_IO_ERROR, Verdict.HOST_IO_ERROR, Verdict.PASS, bisect="regression") == 125
    # a known-bug scenario: its own bug is bad, passing is good, another failure is skip
    assert exit_code(Verdict.XFAIL, Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, bisect="regression") == 1
    assert exit_code(Verdict.XPASS, Verdict.PASS, Verdict.TRIPLE_FAULT, bisect="regression") == 0
    assert exit_code(Verdict.PANIC, Verdict.PANIC, Verdict.TRIPLE_FAULT, bisect="regression") == 125
    assert exit_code(Verdict.INTERRUPTED, Verdict.INTERRUPTED, Verdict.PASS, bisect="regression") == 130


def test_bisect_fix_exit_codes() -> None:
    """Looking for the fix: git bisect run's 0 is the old term (the failure still shows),
    1 the new (it passes); what cannot tell either way is still skip or abort."""
    assert exit_code(Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, Verdict.PASS, bisect="fix") == 0
    assert exit_code(Verdict.PASS, Verdict.PASS, Verdict.PASS, bisect="fix") == 1
    assert exit_code(Verdict.XFAIL, Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, bisect="fix") == 0
    assert exit_code(Verdict.XPASS, Verdict.PASS, Verdict.TRIPLE_FAULT, bisect="fix") == 1
    assert exit_code(Verdict.PANIC, Verdict.PANIC, Verdict.TRIPLE_FAULT, bisect="fix") == 125
    assert exit_code(Verdict.ERROR, Verdict.ERROR, Verdict.PASS, bisect="fix") == 125
    assert exit_code(Verdict.INTERRUPTED, Verdict.INTERRUPTED, Verdict.PASS, bisect="fix") == 130
    with pytest.raises(ValueError, match="options are"):
        exit_code(Verdict.PASS, Verdict.PASS, Verdict.PASS, bisect="yes")


def test_an_expected_failure_needs_its_step_and_its_signature() -> None:
    texts = ["kj-C# kexec -e", "Triple fault"]
    assert apply_expectation(Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, "Triple fault", "jump-back", "jump-back",
                             texts)[0] is Verdict.XFAIL
    # the same failure in another step, or without its signature, stays a failure
    final, matched, note = apply_expectation(Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, "Triple fault",
                                             "jump-back", "jump-to-B", texts)
    assert final is Verdict.TRIPLE_FAULT and not matched and "failed in jump-to-B" in note
    final, matched, note = apply_expectation(Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, "GDT=\\s+0+ 0+",
                                             "jump-back", "jump-back", texts)
    assert final is Verdict.TRIPLE_FAULT and matched is False and "not found in jump-back" in note
    # another failure than the expected one, a pass, a lab error
    assert apply_expectation(Verdict.PANIC, Verdict.TRIPLE_FAULT, "Triple fault", "jump-back", "jump-back",
                             texts)[0] is Verdict.PANIC
    assert apply_expectation(Verdict.PASS, Verdict.TRIPLE_FAULT, "x", "jump-back", "", [])[0] is Verdict.XPASS
    assert apply_expectation(Verdict.ERROR, Verdict.TRIPLE_FAULT, "x", "jump-back", "", [])[0] is Verdict.ERROR
    # an empty signature never matches (and the scenario loader refuses it anyway)
    assert apply_expectation(Verdict.TRIPLE_FAULT, Verdict.TRIPLE_FAULT, "", "jump-back", "jump-back",
                             texts)[0] is Verdict.TRIPLE_FAULT


# -- PASS must be earned by the record, not only by the flow's path ------------------------


class _FlowThatForgetsToFail:
    """A flow (the part lab.runner.run_flow drives) whose run records a check that did not
    hold, or a memory record that says it did not hold, and returns as if all were well:
    the shape of the lab bug CI met on swsusp (a sentinel record ok=false, verdict PASS)."""

    pass_reason = "every check held"
    symbols = None

    def __init__(self, run_dir: Path, spoil: Callable[[RunResult], None]) -> None:
        self.run_dir = run_dir
        self.rec = Recorder(RunResult(run_id="r", scenario="s", scenario_path="s.toml", flow="f",
                                      started=time.time()), run_dir)
        self.spoil = spoil

    def run(self) -> None:
        with self.rec.step("check", "a check", "-", None) as step:
            step.commands.append(Command("true", 0, "", 0.0))
        self.spoil(self.rec.result)


@pytest.mark.parametrize("spoil, doubt", [
    (lambda r: None, None),
    (lambda r: r.checks.append(Check("counter", False, "3 != 4")), "check counter did not hold: 3 != 4"),
    (lambda r: setattr(r, "memory", replace(r.memory, resume=ResumeCheck(
        changed={}, sentinels_after_resume={"ok": False, "summary": "2047/2048 sentinel pages intact in place"}))),
     "memory memory.resume.sentinels_after_resume: 2047/2048 sentinel pages intact in place"),
])
def test_run_flow_refuses_a_pass_its_record_does_not_hold(tmp_path: Path, spoil: Callable[[RunResult], None],
                                                         doubt: str | None) -> None:
    flow = _FlowThatForgetsToFail(tmp_path, spoil)
    run_flow(flow)  # type: ignore[arg-type]  # the part of FlowContext run_flow uses
    result = flow.rec.result
    if doubt is None:
        assert result.verdict is Verdict.PASS and result.unearned_pass() == []
    else:
        assert result.verdict is Verdict.ERROR and result.verdict.kind is Kind.LAB_ERROR
        assert result.reason.startswith("PASS refused") and doubt in result.evidence, result.evidence


def test_every_recorded_pass_is_earned_by_its_record() -> None:
    """The real runs kept as test data (tests/data/runs, recorded on QEMU): each PASS holds
    under the rule run_flow now applies, and each failure has something that does not."""
    from lab.results import load

    runs = sorted(p for p in (Path(__file__).parent / "data" / "runs").iterdir() if (p / "results.json").is_file())
    assert runs
    for run in runs:
        result = load(run)
        if result.verdict is Verdict.PASS:
            assert result.unearned_pass() == [], (run.name, result.unearned_pass())
        else:
            assert result.unearned_pass(), run.name
