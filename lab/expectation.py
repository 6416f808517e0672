"""Known bugs: does a run show the scenario's expected failure, in its own step, with
its own signature? The signature is matched only against the failed step's own logs."""

from __future__ import annotations

import re
from pathlib import Path

from .evidence import clean
from .results import RunResult, Step
from .verdict import Verdict

# FlowStop evidence that follows this line belongs to later steps (what a damaged image
# then did), not to the failed step.
LATER_EVIDENCE = "-- then, at "


def step_texts(run_dir: Path, result: RunResult, step_name: str) -> list[str]:
    """What the step `step_name` itself showed, in this order: its slice of the console
    log (without carriage returns and colour codes), its slice of QEMU's cpu_reset log, the verdict's reason and its evidence up to
    later steps' (evidence is symbolized: function names of instruction pointers)."""
    step = next((s for s in result.steps if s.name == step_name), None)
    if step is None:
        return []
    own_evidence: list[str] = []
    for line in result.evidence:
        if line.startswith(LATER_EVIDENCE):
            break
        own_evidence.append(line)
    texts = []
    if step.vm:
        texts.append(clean(_slice(run_dir / f"console-{step.vm}.log", step.console_start, step.console_end)))
        texts.append(_slice(run_dir / f"cpu-reset-{step.vm}.log", step.cpu_reset_start, step.cpu_reset_end))
    texts += [result.reason, "\n".join(own_evidence)]
    return [t for t in texts if t]


def _slice(path: Path, start: int, end: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(max(0, end - start)) if end > start else b""
    except OSError:
        return ""
    return data.decode(errors="replace")


def apply_expectation(observed: Verdict, expected: Verdict, signature: str, expected_step: str,
                      failed_step: str, step_texts: list[str]) -> tuple[Verdict, bool | None, str]:
    """(final verdict, signature matched?, note) for a run whose expectation may be a known bug.

    XFAIL only when the expected failure happened in the expected step and its signature
    matched that step's own logs (`step_texts`: the failed step's console text, its QEMU
    cpu_reset lines, the verdict's evidence); XPASS when a known bug no longer shows; any
    other outcome stays as seen. A scenario cannot expect a failure without a step and a
    signature (lab.scenario refuses it), so an empty signature never matches everything.
    """
    if expected is Verdict.PASS or (not observed.is_failure and observed is not Verdict.PASS):
        return observed, None, ""
    if observed is Verdict.PASS:
        return Verdict.XPASS, False, f"expected {expected}, but the run passed: the known bug did not show"
    in_step = bool(expected_step) and expected_step == failed_step
    matched = bool(signature) and in_step and signature_matches(signature, step_texts)
    if observed is expected and matched:
        return Verdict.XFAIL, True, f"expected failure {expected} seen in {failed_step}, signature matched"
    why = []
    if observed is not expected:
        why.append(f"expected {expected}")
    if not in_step:
        why.append(f"expected in step {expected_step or '?'}, failed in {failed_step or '-'}")
    elif not matched:
        why.append(f"signature /{signature}/ not found in {failed_step}'s logs")
    return observed, matched, "; ".join(why)


def signature_matches(signature: str, step_texts: list[str]) -> bool:
    """The signature against the step's texts joined in order (console, cpu_reset, reason,
    evidence), so one signature can tie the step's console to QEMU's view of the fault."""
    return re.search(signature, "\n".join(step_texts), re.MULTILINE) is not None
