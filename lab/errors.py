"""One tree of errors: what the user got wrong, what the infrastructure could not do.

Verdicts (a guest that triple-faulted, a check that failed) are not exceptions: they are
results, see lab.verdict. Exceptions here stop the run early.
"""

from __future__ import annotations


class KjlabError(Exception):
    """Base of every error the lab raises on purpose."""


class UserError(KjlabError):
    """Bad input: a scenario file, a key, an option. The message says what is allowed."""


class BadRunRecord(UserError, ValueError):
    """A run directory whose results.json is not a run record (truncated, not JSON, {}):
    bad input, named with the file and what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: not a kjlab run record: {problem}")


class ScenarioError(UserError):
    def __init__(self, path: str, key: str, message: str) -> None:
        self.path, self.key = path, key
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


class InfraError(KjlabError):
    """The lab could not do its own work: a build failed, QEMU would not start."""


class CommandFailed(InfraError):
    def __init__(self, argv: list[str], returncode: int, log_tail: str = "", log_path: str = "") -> None:
        import shlex

        self.argv, self.returncode, self.log_tail, self.log_path = argv, returncode, log_tail, log_path
        msg = f"command failed with exit code {returncode}: {shlex.join(argv)}"
        if log_path:
            msg += f"\n  log: {log_path}"
        if log_tail:
            msg += "\n  last lines:\n" + "\n".join("    " + line for line in log_tail.splitlines())
        super().__init__(msg)


class CommandTimeout(CommandFailed):
    def __init__(self, argv: list[str], seconds: float, log_tail: str = "", log_path: str = "") -> None:
        super().__init__(argv, -9, log_tail, log_path)
        self.seconds = seconds
        self.args = (f"command still running after {seconds:.0f} s, killed: " + str(self).split(": ", 1)[1],)

    def __str__(self) -> str:
        return str(self.args[0])


class BuildError(InfraError):
    """An artifact (kernel, initramfs, disk) could not be built."""


class ConfigSymbolMissing(BuildError):
    def __init__(self, missing: dict[str, tuple[str, str]], config_path: str) -> None:
        self.missing = missing
        lines = [f"  {sym}: requested {want!r}, got {got!r}" for sym, (want, got) in sorted(missing.items())]
        super().__init__(
            f"kernel config {config_path} lacks requested symbols "
            "(a dependency is missing or the symbol does not exist):\n" + "\n".join(lines)
        )


class GuestError(InfraError):
    """Talking to a guest failed in a way that is not a verdict by itself."""


class KernelLogUnreadable(GuestError):
    """A kernel's log could not be read from a memory snapshot (lab.memory.kernel_log):
    what was missing. The verdict stands without it."""


class ConsoleTimeout(GuestError):
    def __init__(self, waiting_for: str, seconds: float, last_lines: str) -> None:
        self.waiting_for, self.seconds, self.last_lines = waiting_for, seconds, last_lines
        super().__init__(f"no {waiting_for} on the serial console within {seconds:.0f} s; last lines:\n{last_lines}")


class ConsoleEOF(GuestError):
    """The console closed: QEMU exited (reboot, triple fault, crash)."""

    def __init__(self, waiting_for: str, last_lines: str) -> None:
        self.waiting_for, self.last_lines = waiting_for, last_lines
        super().__init__(f"console closed while waiting for {waiting_for}; last lines:\n{last_lines}")
