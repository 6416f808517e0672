"""kjlab: a QEMU-orchestrated test lab for Linux kexec-jump hibernation."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GUESTS_DIR = REPO_ROOT / "guests"
SCENARIOS_DIR = REPO_ROOT / "scenarios"
REPORTS_DIR = REPO_ROOT / "reports"
