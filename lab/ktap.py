"""Runs as KTAP (the kernel's TAP dialect, Documentation/dev-tools/ktap.rst), for the tools
that read every other kernel test: KernelCI, LKFT, kunit.py's parser.

One document for one or more runs: each run is a test whose subtests are its steps, in the
order they ran, and - when the run made any - its checks as one more subtest with a case per
check. A run's own result line carries its verdict:

- PASS: ``ok``; XFAIL (the known bug showed, its signature in its step): ``ok ... # XFAIL``
- HANG (the guest stopped answering): ``not ok ... # TIMEOUT``
- a lab error, an interrupted or unfinished run (no verdict on the kernel): ``not ok ... # ERROR``
- any other failure, XPASS included: ``not ok``, the verdict and reason as diagnostic data

A step that failed is ``not ok`` (``# XFAIL`` when it is the expected failure); a skipped
step is ``ok ... # SKIP``. The failed step's evidence follows it as diagnostic lines
(``# ...``). Guest text never becomes a result line: descriptions lose ``#`` and line
breaks, diagnostic lines lose control characters, and each starts with ``# ``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .results import Check, RunResult, Step
from .verdict import Kind, Verdict

INDENT = "    "
EVIDENCE_LINES = 40  # the failed step's diagnostic lines at most
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colour and cursor sequences of a console
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _description(text: str) -> str:
    """A test's description: any characters but '#' and line breaks (KTAP)."""
    return " ".join(text.replace("#", "no.").split()) or "unnamed"


def _diagnostic(text: str) -> str:
    return _CONTROL.sub("", " ".join(_ANSI.sub("", text).split()))


def _run_directive(res: RunResult) -> tuple[bool, str]:
    """(ok, what follows '#') for a run's own result line."""
    v, reason = res.verdict, _diagnostic(res.reason)
    if v is Verdict.PASS:
        return True, ""
    if v is Verdict.XFAIL:
        return True, f"XFAIL {reason}"
    if v is Verdict.HANG:
        return False, f"TIMEOUT {reason}"
    if v.kind in (Kind.LAB_ERROR, Kind.INTERRUPTED, Kind.UNFINISHED):
        return False, f"ERROR {v}: {reason}"
    return False, f"{v}: {reason}"


def _step_line(n: int, step: Step, res: RunResult) -> tuple[str, bool]:
    """A step's result line, and whether its evidence belongs under it."""
    name = _description(step.name)
    message = _diagnostic(step.message)
    if step.outcome == "ok":
        return f"ok {n} {name}", False
    if step.outcome == "skipped":
        return f"ok {n} {name} # SKIP {message}".rstrip(), False
    if step.outcome == "failed":
        the_failure = step.name == res.failed_step
        directive = " ".join(w for w in ("XFAIL" if the_failure and res.verdict is Verdict.XFAIL else "", message) if w)
        return f"not ok {n} {name}" + (f" # {directive}" if directive else ""), the_failure
    return f"not ok {n} {name} # ERROR {step.outcome} {message}".rstrip(), False


def _check_lines(checks: Sequence[Check]) -> list[str]:
    lines = ["KTAP version 1", "# Subtest: checks", f"1..{len(checks)}"]
    for n, check in enumerate(checks, 1):
        detail = _diagnostic(check.detail)
        diagnostic = f" # {detail}" if detail and not check.ok else ""
        lines.append(f"{'ok' if check.ok else 'not ok'} {n} {_description(check.name)}{diagnostic}")
    return lines


def _run_lines(n: int, res: RunResult) -> list[str]:
    """One run as a test at the top level: its subtests (indented), then its result line."""
    sub = ["KTAP version 1", f"# Subtest: {_description(res.scenario)}",
           f"# run {res.run_id}, flow {res.flow}, expected {res.expected_verdict}"]
    kernel = res.provenance.get("kernel") if isinstance(res.provenance.get("kernel"), dict) else {}
    if kernel:
        sub.append(_diagnostic(f"# kernel {kernel.get('release') or kernel.get('source', '?')}"))
    cases = len(res.steps) + (1 if res.checks else 0)
    sub.append(f"1..{cases}")
    for i, step in enumerate(res.steps, 1):
        line, with_evidence = _step_line(i, step, res)
        sub.append(line)
        if with_evidence:
            sub += [f"# {_diagnostic(e)}" for e in res.evidence[:EVIDENCE_LINES] if _diagnostic(e)]
    if res.checks:
        sub += [INDENT + line for line in _check_lines(res.checks)]
        failed = [c.name for c in res.checks if not c.ok]
        sub.append(f"{'not ok' if failed else 'ok'} {cases} checks" + (f" # {', '.join(failed)}" if failed else ""))
    ok, directive = _run_directive(res)
    tail = f"{'ok' if ok else 'not ok'} {n} {_description(res.scenario)}" + (f" # {directive}" if directive else "")
    return [INDENT + line for line in sub] + [tail]


def ktap_document(results: Sequence[RunResult], title: str = "") -> str:
    """KTAP version 1 text for the runs, one top-level test each."""
    lines = ["KTAP version 1"]
    if title:
        lines.append(f"# {_diagnostic(title)}")
    lines.append(f"1..{len(results)}")
    for n, res in enumerate(results, 1):
        lines += _run_lines(n, res)
    return "\n".join(lines) + "\n"
