"""kjlab: a QEMU-orchestrated test lab for Linux kexec-jump hibernation."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = _PACKAGE.parent


def _data_dir(in_package: str, in_checkout: str) -> Path:
    """A data directory: inside the installed package (a wheel carries guests/, the
    scenarios and the report templates as package data), else in the checkout."""
    installed = _PACKAGE / in_package
    return installed if installed.is_dir() else REPO_ROOT / in_checkout


GUESTS_DIR = _data_dir("guests", "guests")
SCENARIOS_DIR = _data_dir("scenarios", "scenarios")
TEMPLATES_DIR = _data_dir("templates", "reports/templates")
BUILDROOT_CONFIG_DIR = _data_dir("buildroot_config", "buildroot-config")  # the recipe (BR2_EXTERNAL)
BUILDROOT_OFFLINE_DIR = _data_dir("buildroot_offline", "buildroot-offline")  # the offline layer's files
# Run directories go to the checkout's reports/, or to ./reports where kjlab is installed.
REPORTS_DIR = REPO_ROOT / "reports" if (REPO_ROOT / "reports").is_dir() else Path.cwd() / "reports"
