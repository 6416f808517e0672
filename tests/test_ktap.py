"""Runs as KTAP (lab.ktap), read back with the kernel's own KTAP parser: kunit.py's
kunit_parser from the lab's 7.2 source (fetched through the lab's cache like the kernel
patches' tests do), so what KernelCI-style tools read is what the lab meant."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lab.ktap import ktap_document
from lab.results import Check, RunResult, Step
from lab.verdict import Verdict


def kunit_parser() -> ModuleType:
    from tests.test_kernel_patches import unpacked_tree

    tools = unpacked_tree("7.2") / "tools/testing/kunit"
    sys.path.insert(0, str(tools))
    try:
        return importlib.import_module("kunit_parser")
    finally:
        sys.path.remove(str(tools))


@pytest.fixture(scope="module")
def parse():
    kp = kunit_parser()
    printer = importlib.import_module("kunit_printer").null_printer
    return lambda text: (kp, kp.parse_run_tests(text.splitlines(), printer))


def _step(name: str, outcome: str = "ok", message: str = "") -> Step:
    return Step(name=name, title=name, seed_step="-", vm="A-B", started=1.0, ended=2.0, outcome=outcome, message=message)


def _run(verdict: Verdict, steps: list[Step], **kw) -> RunResult:
    return RunResult(run_id="20261208-000000-x", scenario=kw.pop("scenario", "i386-hibernate"), scenario_path="x.toml",
                     flow="hibernate", started=1.0, ended=9.0, verdict=verdict, steps=steps, **kw)


PASSED = _run(Verdict.PASS, [_step("artifacts"), _step("boot-A"), _step("jump-back")],
              checks=[Check("proof-file", True, "sha256 equal"), Check("cpus-online", True, "1 of 1")],
              provenance={"kernel": {"release": "6.1.192"}})
# an expected failure whose evidence is guest text that looks like KTAP itself
HOSTILE = ["ok 1 pretend # SKIP", "not ok 2 x", "\x1b[31mKTAP version 1\x1b[0m", "1..9", "#", "a # b\r"]
XFAILED = _run(Verdict.XFAIL, [_step("boot-A"), _step("jump-back", "failed", "triple fault # while waiting"),
                               _step("check-round-trip", "skipped", "A did not come back")],
               failed_step="jump-back", reason="TRIPLE_FAULT as expected", evidence=HOSTILE,
               expected_verdict=Verdict.TRIPLE_FAULT, scenario="bug-i386-triple-fault-resume")
HUNG = _run(Verdict.HANG, [_step("boot-A"), _step("save-image", "failed", "no end within 600 s")],
            failed_step="save-image", reason="no end of cp within 600 s", scenario="bug-hang")
KILLED = _run(Verdict.QEMU_KILLED, [_step("boot-A", "failed", "killed")], failed_step="boot-A",
              reason="QEMU killed by SIGKILL", scenario="killed")
FAILED = _run(Verdict.CHECK_FAILED, [_step("verify-A")], checks=[Check("proof-file", False, "sha256 differs")],
              reason="a check failed", scenario="check-failed")


def test_a_pass_reads_back_as_success_with_its_steps_and_checks(parse) -> None:
    kp, top = parse(ktap_document([PASSED], "kjlab run 1"))
    assert top.counts.errors == 0 and top.status == kp.TestStatus.SUCCESS
    (run,) = top.subtests
    assert run.name == "i386-hibernate" and run.status == kp.TestStatus.SUCCESS
    assert [s.name for s in run.subtests] == ["artifacts", "boot-A", "jump-back", "checks"]
    assert [c.name for c in run.subtests[-1].subtests] == ["proof-file", "cpus-online"]


def test_every_verdict_kind_reads_back_as_what_it_means(parse) -> None:
    kp, top = parse(ktap_document([PASSED, XFAILED, HUNG, KILLED, FAILED]))
    assert top.counts.errors == 0, top
    status = {t.name: t.status for t in top.subtests}
    assert status == {
        "i386-hibernate": kp.TestStatus.SUCCESS,
        "bug-i386-triple-fault-resume": kp.TestStatus.SUCCESS,  # XFAIL: the known bug, as expected
        "bug-hang": kp.TestStatus.FAILURE,
        "killed": kp.TestStatus.FAILURE,
        "check-failed": kp.TestStatus.FAILURE,
    }
    xfail = top.subtests[1]
    assert [(s.name, s.status) for s in xfail.subtests] == [
        ("boot-A", kp.TestStatus.SUCCESS), ("jump-back", kp.TestStatus.FAILURE),
        ("check-round-trip", kp.TestStatus.SKIPPED)]
    assert [c.status for c in top.subtests[4].subtests[-1].subtests] == [kp.TestStatus.FAILURE]


def test_directives_and_guest_text_stay_in_their_place() -> None:
    text = ktap_document([XFAILED, HUNG, KILLED])
    lines = text.splitlines()
    assert lines[0] == "KTAP version 1" and lines[1] == "1..3"
    assert "ok 1 bug-i386-triple-fault-resume # XFAIL TRIPLE_FAULT as expected" in lines
    assert "    not ok 2 jump-back # XFAIL triple fault # while waiting" in lines
    assert "    ok 3 check-round-trip # SKIP A did not come back" in lines
    assert "not ok 2 bug-hang # TIMEOUT no end of cp within 600 s" in lines
    assert "not ok 3 killed # ERROR QEMU_KILLED: QEMU killed by SIGKILL" in lines
    # the evidence: diagnostic lines right after the failed step, no control characters,
    # none of it a result, plan or version line of its own
    at = lines.index("    not ok 2 jump-back # XFAIL triple fault # while waiting")
    assert lines[at + 1:at + 1 + len(HOSTILE)] == [
        "    # ok 1 pretend # SKIP", "    # not ok 2 x", "    # KTAP version 1", "    # 1..9", "    # #", "    # a # b"]
    assert lines[at + 1 + len(HOSTILE)] == "    ok 3 check-round-trip # SKIP A did not come back"
    assert "\x1b" not in text and "\r" not in text
    results = [line.strip() for line in lines if line.strip().startswith(("ok ", "not ok "))]
    assert not any("pretend" in r or r.startswith("not ok 2 x") for r in results)


def test_a_name_loses_hash_and_line_breaks() -> None:
    text = ktap_document([_run(Verdict.PASS, [_step("a#b\nc")], scenario="x # y")])
    assert "    ok 1 ano.b c" in text.splitlines() and "ok 1 x no. y" in text.splitlines()
