"""Choosing the accelerator: KVM only when it really works here, else TCG.

/dev/kvm existing is not enough: on nested setups the device opens but guests hang or
`-cpu host` aborts. The probe is cheap: the host CPU must advertise vmx/svm and
/dev/kvm must open read-write.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccelChoice:
    accel: str
    reason: str


def probe_kvm(cpuinfo_path: str = "/proc/cpuinfo", dev: str = "/dev/kvm") -> AccelChoice:
    try:
        with open(cpuinfo_path, encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError as e:
        return AccelChoice("tcg", f"cannot read {cpuinfo_path}: {e}")
    if "vmx" not in flags and "svm" not in flags:
        return AccelChoice("tcg", "host CPU shows no vmx/svm flag (KVM would not run these guests)")
    try:
        fd = os.open(dev, os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return AccelChoice("tcg", f"{dev} unusable: {e.strerror}")
    return AccelChoice("kvm", f"{dev} opens and the CPU has hardware virtualisation")


def choose_accel(requested: str) -> AccelChoice:
    if requested == "tcg":
        return AccelChoice("tcg", "requested by the machine configuration")
    probe = probe_kvm()
    if requested == "kvm" and probe.accel != "kvm":
        log.warning("KVM requested but %s; falling back to TCG", probe.reason)
    return probe
