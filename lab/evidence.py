"""Reading outcomes out of console text and QEMU's logs. Pure functions on text, so
they are tested on recorded transcripts."""

from __future__ import annotations

import re

from .console import clean as clean  # console text as the lab reads it (the one definition)

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
    keep = re.compile(r"^(Triple fault|check_exception|\s*\d+: v=|EIP=|RIP=|GDT=|IDT=|CR0=|CPU Reset|EAX=|RAX=)")
    window = lines[max(0, idx - 40) : idx + 12]
    return [line for line in window if keep.match(line)]


def cpu_count(grep_c_output: str) -> int | None:
    """The count `grep -c ^processor /proc/cpuinfo` printed: the last line that is only a
    number (a kernel message may land among the output lines during boot)."""
    numbers = [line.strip() for line in clean(grep_c_output).splitlines() if line.strip().isdigit()]
    return int(numbers[-1]) if numbers else None


def parse_cpu_list(output: str) -> list[int] | None:
    """The CPUs of a sysfs CPU list ("0", "0-1,3"), from the last line that is one; None if none is."""
    for line in reversed(clean(output).splitlines()):
        line = line.strip()
        if line and all(part and all(n.isdigit() for n in part.split("-", 1)) for part in line.split(",")):
            cpus: list[int] = []
            for part in line.split(","):
                lo, _, hi = part.partition("-")
                cpus.extend(range(int(lo), int(hi or lo) + 1))
            return sorted(set(cpus))
    return None


def format_cpu_list(cpus: list[int]) -> str:
    """[0, 1, 3] -> "0-1,3", as sysfs writes it."""
    parts: list[str] = []
    for cpu in sorted(cpus):
        if parts and cpu == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{cpu}"
        else:
            parts.append(str(cpu))
    return ",".join(parts)


def cpuinfo_flags(grep_output: str) -> set[str] | None:
    """The flags of `grep -m1 ^flags /proc/cpuinfo`'s line ("flags\t\t: fpu vme ..."), or None."""
    for line in clean(grep_output).splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return None


def kexec_load_entry(kexec_debug_output: str) -> int | None:
    """The entry address `kexec -d` reports for the image it loaded (the first
    instruction the jump will run), or None."""
    found = re.findall(r"kexec_load: entry = (0x[0-9a-fA-F]+)", clean(kexec_debug_output))
    return int(found[-1], 16) if found else None


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


# -- A's kernel log after a resume ---------------------------------------------------------

# What A writes to its kernel log (through /dev/kmsg) just before each jump out: the
# log of "this" resume is what follows the newest such line.
JUMP_MARK = "kjlab: jump-out"
RESTART_RE = re.compile(r"Restarting tasks")
RESTART_DONE_RE = re.compile(r"Restarting tasks( \.\.\.)?.*\b[Dd]one\b|^\s*(\[[^]]*\]\s*)?[Dd]one\.?\s*$")
# Each of these in the kernel log after a jump is a verdict of its own, never PASS.
OOPS_RE = re.compile(r"BUG: unable to handle|Oops: |general protection fault|Kernel panic - not syncing|"
                     r"kernel BUG at")
TROUBLE_RE = re.compile(r"WARNING: |BUG: |watchdog: BUG: soft lockup|hard LOCKUP|rcu: INFO: .*stall|"
                        r"rcu_sched self-detected stall|INFO: task .* blocked for more than")


def jump_mark(n: int) -> str:
    return f"{JUMP_MARK} {n}"


def log_since_jump(dmesg: str, n: int) -> list[str] | None:
    """A's kernel log after its n-th jump out (the newest line that marks it), or None
    when the mark is not in the log."""
    lines = clean(dmesg).split("\n")
    mark = jump_mark(n)
    at = [i for i, line in enumerate(lines) if line.rstrip().endswith(mark)]
    return lines[at[-1] + 1:] if at else None


def restarted(after_jump: list[str]) -> str | None:
    """The 'Restarting tasks ... done' of this resume, or None. "done." may come on a line
    of its own when a driver prints in between (NVMe does); 7.x says "Restarting tasks: Done"."""
    for i, line in enumerate(after_jump):
        if RESTART_RE.search(line):
            for later in after_jump[i:i + 20]:
                if RESTART_DONE_RE.search(later):
                    return line.strip() if later is line else f"{line.strip()} ... {later.strip()}"
    return None


def kernel_trouble(after_jump: list[str], context_after: int = 25) -> tuple[bool, list[str]]:
    """(is it an oops?, the trace) of the first WARNING, BUG, oops, lockup or RCU stall."""
    for i, line in enumerate(after_jump):
        oops = bool(OOPS_RE.search(line))
        if oops or TROUBLE_RE.search(line):
            trace = [line]
            for later in after_jump[i + 1:i + 1 + context_after]:
                trace.append(later)
                if "---[ end trace" in later:
                    break
            return oops, trace
    return False, []


# A kernel's "Zone ranges" at boot (mm/mm_init.c, free_area_init): "  HighMem  [mem
# 0x0000000037ffe000-0x000000003e7fffff]", or "  HighMem  empty" when all RAM is lowmem.
# Whatever precedes the zone's name on its line: a busy host's console once gave
# "[    0.000000  HighMem  [mem ...]" (the timestamp's "]" lost).
HIGHMEM_ZONE_RE = re.compile(r"^[^\n]*?\bHighMem\s+\[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]", re.MULTILINE)


def highmem_zone(boot_log: str) -> tuple[int, int] | None:
    """[start, end) of the first HighMem zone a kernel of the log reported at boot, or None:
    no such line, or the zone is empty (an i386 kernel whose RAM all fits its lowmem)."""
    m = HIGHMEM_ZONE_RE.search(clean(boot_log))
    return (int(m.group(1), 16), int(m.group(2), 16) + 1) if m else None
