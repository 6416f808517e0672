"""What a run ran on: host, QEMU, the lab's own commit."""

from __future__ import annotations

import platform
import subprocess

from . import REPO_ROOT


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def host_provenance(qemu_binary: str) -> dict[str, str]:
    return {
        "qemu": _first_line([qemu_binary, "--version"]),
        "host": f"{platform.node()} {platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "kjlab_commit": _kjlab_version(),
        "kjlab_root": str(REPO_ROOT),  # scenario paths below it are shown relative in the report
    }


def _kjlab_version() -> str:
    """The checkout's commit (`git describe --always --dirty`: "<commit>-dirty" when the
    checkout had uncommitted changes), or the installed package's version (a wheel has no git)."""
    if (REPO_ROOT / ".git").exists():
        return _first_line(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--abbrev=12"])
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"kjlab {version('kjlab')} (installed)"
    except PackageNotFoundError:
        return "unknown"
