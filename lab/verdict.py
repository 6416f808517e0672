"""Reading outcomes out of console text and QEMU's logs. Pure functions on text, so
they are tested on recorded transcripts."""

from __future__ import annotations

import re

from .console import ANSI_RE

PASS = "PASS"
# A verdict for each way a run can go wrong; the report explains each with evidence.
FAILURE_VERDICTS = ("TRIPLE_FAULT", "PANIC", "HANG", "KEXEC_ERROR", "CHECK_FAILED", "GUEST_RESET")
XFAIL, XPASS = "XFAIL", "XPASS"  # a known bug showed as expected / no longer shows
ERROR = "ERROR"  # the lab itself could not test (build failed, QEMU would not start)
INTERRUPTED = "INTERRUPTED"

# A kernel that is going down: the first of these lines starts the evidence.
PANIC_RE = re.compile(
    r"Kernel panic - not syncing|BUG: unable to handle|Oops: |general protection fault|"
    r"Attempted to kill init|segfault at "
)
# kexec-tools and the kernel's kexec/vmcore messages that explain a failed step.
KEXEC_ERROR_RE = re.compile(
    r"locate_hole failed|Could not find a free area of memory|Cannot malloc|kexec_load failed|"
    r"Invalid memory segment|Overlapping memory segments|Could not allocate control_code_buffer|"
    r"Zero PT_NOTE entries found|vmcore not initialized|No space left on device|"
    r"kexec_file_load failed|Cannot load|kexec failed|Nothing has been loaded"
)
RESUMED_RE = re.compile(r"Restarting tasks \.\.\. done\.")


def clean(text: str) -> str:
    return ANSI_RE.sub("", text.replace("\r", ""))


def matching_lines(text: str, pattern: re.Pattern[str], context_after: int = 0) -> list[str]:
    lines = clean(text).split("\n")
    out: list[str] = []
    for i, line in enumerate(lines):
        if pattern.search(line):
            for extra in lines[i : i + 1 + context_after]:
                if extra not in out:
                    out.append(extra)
    return out


def panic_lines(text: str) -> list[str]:
    return matching_lines(text, PANIC_RE, context_after=2)


def kexec_error_lines(text: str) -> list[str]:
    return matching_lines(text, KEXEC_ERROR_RE)


def triple_fault_evidence(cpu_reset_log: str) -> list[str]:
    """The lines of QEMU's -d cpu_reset(,int) log that show a triple fault and its state."""
    lines = cpu_reset_log.splitlines()
    if not any(line.strip() == "Triple fault" for line in lines):
        return []
    idx = max(i for i, line in enumerate(lines) if line.strip() == "Triple fault")
    keep = re.compile(r"^(Triple fault|check_exception|\s*\d+: v=|EIP=|GDT=|IDT=|CR0=|CPU Reset|EAX=)")
    window = lines[max(0, idx - 40) : idx + 12]
    return [line for line in window if keep.match(line)]


def jump_back_entry(cmdline: str) -> str | None:
    m = re.search(r"kexec_jump_back_entry=(0x[0-9a-fA-F]+)", cmdline)
    return m.group(1) if m else None


def parse_checks(output: str) -> list[tuple[str, bool, str]]:
    """Lines `CHECK name ok|bad detail` printed by guests/rootfs/bin/kj-proof-check."""
    checks = []
    for line in clean(output).splitlines():
        m = re.match(r"CHECK (\S+) (ok|bad) ?(.*)$", line.strip())
        if m:
            checks.append((m.group(1), m.group(2) == "ok", m.group(3)))
    return checks


def apply_expectation(observed: str, expected: str, signature: str, expected_step: str,
                      failed_step: str, texts: list[str]) -> tuple[str, bool | None, str]:
    """(final verdict, signature matched?, note) for a run whose expectation may be a known bug.

    XFAIL when the expected failure happened, in the expected step, matching the
    signature; XPASS when a known bug no longer shows; any other outcome stays as seen.
    """
    if expected == PASS or observed in (ERROR, INTERRUPTED):
        return observed, None, ""
    if observed == PASS:
        return XPASS, False, f"expected {expected}, but the run passed: the known bug did not show"
    matched = not signature or any(re.search(signature, t, re.MULTILINE) for t in texts)
    if observed == expected and matched and (not expected_step or expected_step == failed_step):
        return XFAIL, True, f"expected failure {expected} seen" + (f" in {failed_step}" if failed_step else "")
    why = []
    if observed != expected:
        why.append(f"expected {expected}")
    if not matched:
        why.append(f"signature /{signature}/ not found")
    if expected_step and expected_step != failed_step:
        why.append(f"expected in step {expected_step}, failed in {failed_step or '-'}")
    return observed, matched, "; ".join(why)
