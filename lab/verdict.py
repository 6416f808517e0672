"""The one definition of kjlab's verdicts: what each means, how it counts, its colour
class, its exit code, and how JUnit and KCIDB see it. Every other module asks this one.

A verdict is a StrEnum, so it is written to results.json, the history and the exports
as its plain name ("TRIPLE_FAULT") and compares equal to that string.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Kind(Enum):
    """How a verdict counts."""

    PASS = "pass"  # every check ran and held
    EXPECTED = "expected failure"  # a known bug showed, with its own signature in its own step
    FAILURE = "failure"  # the kernel (or the flow under test) went wrong
    LAB_ERROR = "lab error"  # the lab could not test: no verdict on the kernel
    INTERRUPTED = "interrupted"  # stopped by a signal; partial results
    UNFINISHED = "unfinished"  # still running, or killed without a verdict


# Exit codes fit `git bisect run`: 0 good, 1 bad, 125 cannot test; 130 after a signal.
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_CANNOT_TEST, EXIT_INTERRUPTED = 0, 1, 2, 125, 130


@dataclass(frozen=True)
class _Info:
    kind: Kind
    meaning: str


class Verdict(StrEnum):
    PASS = "PASS"
    XFAIL = "XFAIL"
    XPASS = "XPASS"
    TRIPLE_FAULT = "TRIPLE_FAULT"
    PANIC = "PANIC"
    KERNEL_WARNING = "KERNEL_WARNING"
    HANG = "HANG"
    GUEST_RESET = "GUEST_RESET"
    KEXEC_ERROR = "KEXEC_ERROR"
    SAVE_FAILED = "SAVE_FAILED"
    CORRUPT_IMAGE = "CORRUPT_IMAGE"
    CHECK_FAILED = "CHECK_FAILED"
    ERROR = "ERROR"
    HOST_IO_ERROR = "HOST_IO_ERROR"
    QEMU_KILLED = "QEMU_KILLED"
    INTERRUPTED = "INTERRUPTED"
    RUNNING = "RUNNING"

    @property
    def info(self) -> _Info:
        return _INFO[self]

    @property
    def kind(self) -> Kind:
        return _INFO[self].kind

    @property
    def meaning(self) -> str:
        return _INFO[self].meaning

    @property
    def good(self) -> bool:
        """Passed, or showed its known bug as expected: nothing for a person to look at."""
        return self.kind in (Kind.PASS, Kind.EXPECTED)

    @property
    def is_failure(self) -> bool:
        return self.kind is Kind.FAILURE

    @property
    def css(self) -> str:
        """The report's colour class (see lab.report.colours.PALETTE)."""
        if self.kind is Kind.FAILURE:
            return "xpass" if self is Verdict.XPASS else "fail"
        return {Kind.PASS: "pass", Kind.EXPECTED: "xfail", Kind.LAB_ERROR: "error",
                Kind.INTERRUPTED: "interrupted", Kind.UNFINISHED: "running"}[self.kind]

    @property
    def exit_code(self) -> int:
        return {Kind.PASS: EXIT_PASS, Kind.EXPECTED: EXIT_PASS, Kind.FAILURE: EXIT_FAIL,
                Kind.LAB_ERROR: EXIT_CANNOT_TEST, Kind.INTERRUPTED: EXIT_INTERRUPTED,
                Kind.UNFINISHED: EXIT_CANNOT_TEST}[self.kind]

    @property
    def junit(self) -> str:
        """``pass``, ``failure`` or ``error``: how the verdict counts in a JUnit report."""
        if self.good:
            return "pass"
        return "failure" if self.kind is Kind.FAILURE else "error"

    @property
    def kcidb(self) -> str:
        """KCIDB v5 test status."""
        if self.good:
            return "PASS"
        if self.kind is Kind.FAILURE:
            return "FAIL"
        if self.kind is Kind.LAB_ERROR:
            return "ERROR"
        return "MISS"  # interrupted or unfinished: the code's state is unknown

    @classmethod
    def parse(cls, value: str) -> Verdict:
        """A verdict from a record; a name this version does not know reads as ERROR
        (an old or foreign record must not crash a report or a history)."""
        try:
            return cls(value)
        except ValueError:
            return cls.ERROR


_INFO: dict[Verdict, _Info] = {
    Verdict.PASS: _Info(Kind.PASS, "pass: A resumed and every check ran and held"),
    Verdict.XFAIL: _Info(Kind.EXPECTED, "expected failure: the known bug showed, its signature in its step"),
    Verdict.XPASS: _Info(Kind.FAILURE, "unexpected pass: the known bug did not show"),
    Verdict.TRIPLE_FAULT: _Info(Kind.FAILURE, "failure: triple fault (CPU reset)"),
    Verdict.PANIC: _Info(Kind.FAILURE, "failure: kernel panic or oops"),
    Verdict.KERNEL_WARNING: _Info(Kind.FAILURE, "failure: WARNING, BUG, lockup or RCU stall in the kernel log"),
    Verdict.HANG: _Info(Kind.FAILURE, "failure: the guest stopped answering"),
    Verdict.GUEST_RESET: _Info(Kind.FAILURE, "failure: unexpected guest reset"),
    Verdict.KEXEC_ERROR: _Info(Kind.FAILURE, "failure: kexec error"),
    Verdict.SAVE_FAILED: _Info(Kind.FAILURE, "failure: kernel B could not save the image"),
    Verdict.CORRUPT_IMAGE: _Info(Kind.FAILURE, "failure: the image does not hold A's memory"),
    Verdict.CHECK_FAILED: _Info(Kind.FAILURE, "failure: a check failed or did not report"),
    Verdict.ERROR: _Info(Kind.LAB_ERROR, "lab error: no verdict on the kernel"),
    Verdict.HOST_IO_ERROR: _Info(Kind.LAB_ERROR, "lab error: the host's disk failed or filled up"),
    Verdict.QEMU_KILLED: _Info(Kind.LAB_ERROR, "lab error: a QEMU was killed from outside the lab (a signal: "
                               "the OOM killer, an operator), not by its guest"),
    Verdict.INTERRUPTED: _Info(Kind.INTERRUPTED, "run interrupted"),
    Verdict.RUNNING: _Info(Kind.UNFINISHED, "still running, or killed without a verdict"),
}

# What a scenario may expect: PASS or one failure the lab can show.
EXPECTABLE: tuple[Verdict, ...] = (Verdict.PASS, *(v for v in Verdict if v.kind is Kind.FAILURE and v is not Verdict.XPASS))


BISECT_MODES = ("", "regression", "fix")


def exit_code(verdict: Verdict, observed: Verdict, expected: Verdict, bisect: str = "") -> int:
    """The process exit code of a run. Under --bisect ("regression": which commit broke
    it): good (the run passed), bad (it showed the scenario's failure, or any failure of a
    scenario that expects PASS), skip. Under --bisect-fix ("fix": which commit fixed it)
    the first two swap, as `git bisect run` takes 0 for its old term: 0 while the failure
    shows, 1 once the run passes."""
    if bisect not in BISECT_MODES:
        raise ValueError(f"bisect mode {bisect!r}; options are {BISECT_MODES}")
    if bisect:
        passed = observed is Verdict.PASS
        failed = verdict is Verdict.XFAIL or (expected is Verdict.PASS and observed.is_failure)
        if passed or failed:
            return EXIT_PASS if passed == (bisect == "regression") else EXIT_FAIL
        return EXIT_INTERRUPTED if observed is Verdict.INTERRUPTED else EXIT_CANNOT_TEST
    return verdict.exit_code
