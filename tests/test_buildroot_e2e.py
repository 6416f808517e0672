"""The Buildroot initramfs from nothing: a fresh cache (KJLAB_CACHE in tmp_path), then
`kjlab run` of scenarios/flows/hibernate-buildroot.toml builds the kernel, Buildroot's
image (sources from Debian's source packages and makedumpfile's vendored one, Buildroot
under nice) and passes the ten steps with that image in A, B and C; a second run (in this
process, through run_scenario) rebuilds nothing, and on the resumed A runs busybox, kexec
and makedumpfile from the image, each showing the version the provenance names. Long: the
cold Buildroot build takes about 6 to 13 minutes on two busy cores (`pytest -m buildroot`).

KJLAB_BUILDROOT_TEST_CACHE=DIR uses DIR as the cache instead: where guests must not wait
for a build (a lock around QEMU runs, as on the lab's shared machines), build into a fresh
DIR first without the lock, then run this test under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.flows.base import Recorder
from lab.guest import GuestVM
from lab.runner import run_scenario
from lab.scenario import load_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.buildroot]  # e2e: never in the offline suite

SCENARIO = SCENARIOS_DIR / "flows" / "hibernate-buildroot.toml"


def kjlab_run(runs_dir: Path, env: dict[str, str]) -> tuple[int, dict, Path]:
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(SCENARIO), "--runs-dir", str(runs_dir)],
                          capture_output=True, text=True, timeout=6 * 3600, env=env)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return proc.returncode, json.loads((run_dir / "results.json").read_text()), run_dir


def test_buildroot_image_from_nothing_passes_and_is_cached(tmp_path, monkeypatch):
    cache = os.environ.get("KJLAB_BUILDROOT_TEST_CACHE", str(tmp_path / "cache"))
    env = dict(os.environ, KJLAB_CACHE=cache)
    code, res, run_dir = kjlab_run(tmp_path / "runs1", env)
    assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
    assert code == 0
    initramfs = res["provenance"]["initramfs"]
    assert initramfs["recipe"] == "buildroot" and initramfs["without"] == []
    versions = initramfs["versions"]
    assert versions["busybox"] and versions["kexec"] and versions["makedumpfile"]
    for pkg in ("busybox", "kexec"):
        record = initramfs["source_packages"][pkg]
        assert record["debian_source"] and len(record["sha256"]) == 64
    record = initramfs["source_packages"]["makedumpfile"]
    assert record["vendored"] == f"buildroot-offline/dl/makedumpfile/makedumpfile-{versions['makedumpfile']}.tar.gz"
    assert "vendored in kjlab" in record["used_as"] and record["origin"]
    html = (run_dir / "report.html").read_text()
    assert "buildroot" in html and all(versions[p] in html for p in ("busybox", "kexec", "makedumpfile"))

    # the second run, in this process: nothing rebuilt; the image's programs run on the resumed A
    monkeypatch.setenv("KJLAB_CACHE", cache)
    seen: dict[str, tuple[str, int]] = {}

    def on_resumed(vm: GuestVM, rec: Recorder) -> None:
        for name, command in (("busybox", "busybox | head -n 1"), ("kexec", "kexec --version"),
                              ("makedumpfile", "makedumpfile -v")):  # 1.7.8 has no --version
            result = rec.run(vm.console, command, 60.0)
            seen[name] = (result.output, result.status)

    (tmp_path / "runs2").mkdir()
    outcome = run_scenario(load_scenario(SCENARIO), tmp_path / "runs2", on_resumed=on_resumed)
    res2 = outcome.result
    assert res2.verdict.value == "PASS", (res2.reason, res2.evidence)
    assert res2.provenance["initramfs"]["cached"] is True
    assert res2.provenance["initramfs"]["base_key"] == initramfs["base_key"]
    for name, (output, status) in seen.items():
        assert status == 0 and versions[name] in output, (name, output)
    assert set(seen) == {"busybox", "kexec", "makedumpfile"}
