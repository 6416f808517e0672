"""The Buildroot initramfs from nothing: a fresh cache (KJLAB_CACHE in tmp_path), then
`kjlab run` of scenarios/flows/hibernate-buildroot.toml builds the kernel, Buildroot's
image (sources from Debian's source packages, Buildroot under nice) and passes the ten
steps with that image in A, B and C; a second run rebuilds nothing. Long: the cold
Buildroot build takes about 13 minutes on two busy cores (`pytest -m buildroot`).

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

pytestmark = [pytest.mark.e2e, pytest.mark.buildroot]  # e2e: never in the offline suite

SCENARIO = SCENARIOS_DIR / "flows" / "hibernate-buildroot.toml"


def kjlab_run(runs_dir: Path, env: dict[str, str]) -> tuple[int, dict, Path]:
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(SCENARIO), "--runs-dir", str(runs_dir)],
                          capture_output=True, text=True, timeout=6 * 3600, env=env)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return proc.returncode, json.loads((run_dir / "results.json").read_text()), run_dir


def test_buildroot_image_from_nothing_passes_and_is_cached(tmp_path):
    env = dict(os.environ, KJLAB_CACHE=os.environ.get("KJLAB_BUILDROOT_TEST_CACHE", str(tmp_path / "cache")))
    code, res, run_dir = kjlab_run(tmp_path / "runs1", env)
    assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
    assert code == 0
    initramfs = res["provenance"]["initramfs"]
    assert initramfs["recipe"] == "buildroot"
    versions = initramfs["versions"]
    assert versions["busybox"] and versions["kexec"]
    assert "makedumpfile" not in versions  # left out by the scenario
    for pkg in ("busybox", "kexec"):
        record = initramfs["source_packages"][pkg]
        assert record["debian_source"] and len(record["sha256"]) == 64
    html = (run_dir / "report.html").read_text()
    assert "buildroot" in html and versions["busybox"] in html and versions["kexec"] in html

    code, res2, _ = kjlab_run(tmp_path / "runs2", env)
    assert res2["verdict"] == "PASS" and code == 0
    assert res2["provenance"]["initramfs"]["cached"] is True
    assert res2["provenance"]["initramfs"]["base_key"] == initramfs["base_key"]
