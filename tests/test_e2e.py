"""End to end on real QEMU with real kernels built from Debian's linux-source-6.1.

Cold, each kernel costs a build of about 2.5 minutes (cached afterwards by a hash of
its inputs); each run then costs what the guests take.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import SCENARIOS_DIR
from lab.memory.image import PhysImage

pytestmark = pytest.mark.e2e

KJLAB = [sys.executable, "-m", "lab.cli"]


def kjlab_run(scenario: str, runs_dir: Path, timeout: float = 1800, *more: str) -> tuple[int, dict, Path]:
    proc = subprocess.run([*KJLAB, "run", str(SCENARIOS_DIR / scenario), "--runs-dir", str(runs_dir), *more],
                          capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return proc.returncode, json.loads((run_dir / "results.json").read_text()), run_dir


def qemu_processes_for(run_dir: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", f"qemu-system.*{run_dir}"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def read_ktap(path: Path):
    """The run's KTAP as the kernel's own parser (kunit.py) reads it."""
    from tests.test_ktap import kunit_parser

    kp = kunit_parser()
    import kunit_printer  # beside kunit_parser, importable once that is loaded

    return kp, kp.parse_run_tests(path.read_text().splitlines(), kunit_printer.null_printer)


def test_default_scenario_passes(tmp_path):
    runs, ktap = tmp_path / "runs", tmp_path / "run.ktap"
    code, res, run_dir = kjlab_run("i386-hibernate.toml", runs, 1800, "--ktap", str(ktap))
    assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
    assert code == 0
    names = [s["name"] for s in res["steps"]]
    assert names[:1] == ["artifacts"] and "jump-back" in names and "verify-A" in names
    assert all(s["outcome"] == "ok" for s in res["steps"])
    checks = {c["name"]: c["ok"] for c in res["checks"]}
    assert checks and all(checks.values())
    assert {"proof-file", "counter", "resume-log", "kernel-log-clean", "cpus-online", "kernel-is-A",
            "disk-after-resume", "no-panic"} <= set(checks)
    for snap in res["snapshots"]:  # A's RAM (mem=120M of the machine's 256 MiB) and no more
        with PhysImage.open(run_dir / snap["path"]) as img:
            assert img.present_ranges() == [(0, 120 << 20)], snap["name"]
    assert {s["name"] for s in res["snapshots"]} == {"A-departure", "B-booted", "A-return", "A-running"}
    # the same run in KTAP, as KernelCI-style tools read it: a success, step by step
    kp, top = read_ktap(ktap)
    (run,) = top.subtests
    assert top.counts.errors == 0 and run.status == kp.TestStatus.SUCCESS
    assert [t.name for t in run.subtests] == [*names, "checks"]
    assert {t.name for t in run.subtests[-1].subtests} == set(checks)
    # The exact proof: every page the image holds outside low memory and B's window is
    # the same at departure, in B, on the disk and at return.
    mem = res["memory"]
    # ... and every page of A's RAM, 0 to 120 MiB, when A runs again: B's window swapped
    # back, the low 1 MiB compared with each changed page named by its owner in A, A's own
    # writes since its return named, nothing lost.
    leg = mem["resumed"]
    assert leg["ok"] and leg["pages"] == 30720 and not leg["problems"] and not leg["missing"], leg["problems"]
    assert leg["lost"] == [] and leg["window_back"] > 6000 and leg["sources_kept"] > 6000
    low = leg["low_memory"]
    assert low["pages_compared"] == 256 and low["used_after_resume"] == 0
    assert len(low["owners"]) == len(low["changed"]) > 0 and all(low["owners"])
    assert all(not w["what"].startswith("unnamed") for w in leg["own_writes"]), leg["own_writes"]
    assert leg["summary"].startswith("every page of A's RAM from 0 to 120 MiB (30720 pages) when A ran again")
    # each page counted once
    assert leg["equal"] + leg["window_back"] + leg["sources_kept"] + len(low["changed"]) + len(leg["own_writes"]) \
        == 30720
    proof = mem["round_trip"]
    assert proof["proven"] and proof["complete"] and proof["pages_in_domain"] > 20000
    assert [leg["name"] for leg in proof["legs"]] == ["departure = in B", "in B = on the disk", "on the disk = return"]
    assert all(leg["pages_compared"] == proof["pages_in_domain"] and leg["pages_differing"] == 0 for leg in proof["legs"])
    assert {tuple(x["range"]) for x in proof["left_out"]} >= {(0, 0x100000), (0x100000, 0x2000000)}
    image = mem["image_check"]
    assert image["image_vs_b_snapshot"]["pages_differing"] == 0
    assert image["sentinels_in_image"]["missing"] == {} and image["sentinels_in_image"]["corrupted"] == {}
    resume = mem["resume"]["sentinels_after_resume"]
    assert resume["ok"] and resume["found_intact"] == {"tmpfs": 1024, "anon": 1024}
    assert mem["map"]["page_counts"]["sentinel"] == 2048 and mem["map"]["page_counts"]["corrupted"] == 0
    assert "mc-sentinel" in (run_dir / "report.html").read_text()
    # A's shell returned from its own kexec -e on C's console: that is the resume.
    assert "Restarting tasks ... done." in (run_dir / "console-C-A.log").read_text(errors="replace")
    report = (run_dir / "report.html").read_text()
    assert "PASS" in report and "jump-back" in report
    assert "every page of A&#39;s RAM from 0 to 120 MiB" in report and "departure = A running again" in report
    assert res["provenance"]["kernel"]["patches"] and res["provenance"]["accelerator"] in ("tcg", "kvm")
    assert not qemu_processes_for(run_dir)


def test_unpatched_kernel_triple_faults_on_jump_back(tmp_path):
    runs, ktap = tmp_path / "runs", tmp_path / "run.ktap"
    code, res, run_dir = kjlab_run("i386-hibernate-unpatched.toml", runs, 1800, "--ktap", str(ktap))
    assert res["verdict"] == "TRIPLE_FAULT", (res["reason"], res["evidence"])
    assert res["failed_step"] == "jump-back"
    assert code == 1
    assert any("Triple fault" in line for line in res["evidence"])
    assert any(line.startswith("GDT=") for line in res["evidence"])
    # QEMU held the machine after the triple fault: A's own log, read from its memory,
    # shows how far A got - its jump out, and nothing after the jump back.
    (klog,) = res["kernel_logs"]
    assert klog["kernel"] == "A" and klog["step"] == "jump-back", klog
    assert "kjlab: jump-out 1" in (run_dir / klog["text"]).read_text()
    assert any("read from memory" in line for line in res["evidence"])
    assert "TRIPLE_FAULT" in (run_dir / "report.html").read_text()
    # What was compared is said, never more: the image's pages at return, and the low
    # 1 MiB (which the image does not hold) page by page, each changed page named.
    (said,) = [line for line in res["evidence"] if "check-round-trip:" in line]
    assert "pages of A the image holds were intact at return; the low 1 MiB: " in said, said
    assert not any("every page of A was intact" in line for line in res["evidence"])
    kp, top = read_ktap(ktap)  # in KTAP: a failure, in its step, with its evidence below it
    (run,) = top.subtests
    assert top.counts.errors == 0 and run.status == kp.TestStatus.FAILURE
    (failed,) = [t for t in run.subtests if t.status == kp.TestStatus.FAILURE]
    assert failed.name == "jump-back"
    assert "# TRIPLE_FAULT: " in ktap.read_text() and "Triple fault" in ktap.read_text()
    low = res["memory"]["low_memory_at_return"]
    assert low["pages_compared"] == 256 and len(low["owners"]) == len(low["changed"]) > 0
    assert not qemu_processes_for(run_dir)


def test_a_damaged_image_is_caught_with_its_pages_named(tmp_path):
    code, res, run_dir = kjlab_run("checks/corrupt-image.toml", tmp_path)
    assert res["observed_verdict"] == "CORRUPT_IMAGE" and res["verdict"] == "XFAIL", (res["reason"], res["evidence"])
    assert res["failed_step"] == "check-image" and code == 0
    (damage,) = [c for s in res["steps"] if s["name"] == "corrupt-image" for c in s["commands"]]
    damaged = sorted(int(a, 16) for a in damage["output"].split(", "))
    assert len(damaged) == 8
    # The image differs from A's memory in B at exactly the damaged pages, no more.
    diff = res["memory"]["image_check"]["image_vs_b_snapshot"]
    assert diff["pages_differing"] == 8
    ranges = [tuple(int(x, 16) for x in r["range"].split("-")) for r in diff["differing"]["ranges"]]
    pages = sorted(p for start, end in ranges for p in range(start, end, 4096))
    assert pages == damaged
    assert res["memory"]["image_check"]["sentinels_in_image"]["corrupted"]["anon"]["count"] == 8
    # A came back alive, yet its memory holds the same 8 damaged pages.
    assert res["memory"]["resume"]["sentinels_after_resume"]["corrupted"]["anon"]["count"] == 8
    assert res["memory"]["map"]["page_counts"]["corrupted"] >= 8


def test_sigint_during_the_jump_leaves_no_qemu_and_an_interrupted_report(tmp_path):
    proc = subprocess.Popen([*KJLAB, "run", str(SCENARIOS_DIR / "i386-hibernate.toml"), "--runs-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 1200
    run_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
        if dirs and (dirs[0] / "results.json").exists():
            run_dir = dirs[0]
            steps = json.loads((run_dir / "results.json").read_text())["steps"]
            if steps and steps[-1]["name"] == "jump-to-B" and steps[-1]["outcome"] == "running":
                break
        time.sleep(0.2)
    assert run_dir is not None and proc.poll() is None, "the run never reached the jump"
    time.sleep(1.0)  # inside the jump: B is booting
    assert qemu_processes_for(run_dir), "QEMU should be running during the jump"
    os.kill(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output[-2000:]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["verdict"] == "INTERRUPTED"
    assert res["failed_step"] == "jump-to-B"
    assert "INTERRUPTED" in (run_dir / "report.html").read_text()
    assert not qemu_processes_for(run_dir)


def test_an_image_changed_on_the_disk_after_b_saved_it_is_refused_with_the_page_named(tmp_path):
    code, res, run_dir = kjlab_run("checks/tamper-image.toml", tmp_path)
    assert res["observed_verdict"] == "CORRUPT_IMAGE" and res["verdict"] == "XFAIL", (res["reason"], res["evidence"])
    assert res["failed_step"] == "load-image" and code == 0
    assert res["reason"].startswith("the image on the disk changed after B saved it")
    assert any("1 of" in line and "0x5000000-0x5001000" in line for line in res["evidence"]), res["evidence"]
    assert any(line.startswith("page 0x05000000: first difference at +0x123") for line in res["evidence"])
    # C refused the image: no kexec -l of it, no jump back.
    names = [s["name"] for s in res["steps"]]
    assert "jump-back" not in names
    load = next(s for s in res["steps"] if s["name"] == "load-image")
    assert not any(c["command"].startswith("kexec") for c in load["commands"])
    assert not qemu_processes_for(run_dir)


def test_a_warning_in_a_after_the_resume_is_not_pass(tmp_path):
    code, res, run_dir = kjlab_run("checks/warning-after-resume.toml", tmp_path)
    assert res["observed_verdict"] == "KERNEL_WARNING", (res["reason"], res["evidence"])
    assert res["verdict"] == "XFAIL" and res["failed_step"] == "verify-A" and code == 0
    assert any("lkdtm_WARNING" in line for line in res["evidence"])
    assert any("end trace" in line for line in res["evidence"])
    checks = {c["name"]: c["ok"] for c in res["checks"]}
    assert checks["kernel-log-clean"] is False and checks["proof-file"] and checks["resume-log"]


def test_an_smp_machine_has_every_cpu_online_after_the_resume(tmp_path):
    code, res, run_dir = kjlab_run("checks/smp-cpus-after-resume.toml", tmp_path)
    assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
    (cpus,) = [c for c in res["checks"] if c["name"] == "cpus-online"]
    assert cpus["ok"] and cpus["detail"].startswith("2 of the machine's 2 CPUs")
    assert res["memory"]["round_trip"]["proven"]


def assert_a_silent_panic_read_from_memory(code: int, res: dict[str, Any], run_dir: Path) -> None:
    """What the silent-panic and silent-reset checks share: A's panic after the jump back,
    expected (XFAIL) in verify-A, never on the console, so the evidence read it from A's
    memory; and no QEMU left behind."""
    assert res["observed_verdict"] == "PANIC", (res["reason"], res["evidence"])
    assert res["verdict"] == "XFAIL" and res["failed_step"] == "verify-A" and code == 0
    # The console never showed the panic: it can only have come from memory.
    console = (run_dir / "console-A-B.log").read_text(errors="replace")
    assert "Kernel panic" not in console and "dumptest" not in console
    assert res["evidence"][0] == "-- kernel A's log, read from memory (snapshot-silent-verify-A.elf) --"
    assert "Kernel panic - not syncing: dumptest" in res["evidence"][1]
    assert not qemu_processes_for(run_dir)


def test_a_kernel_that_dies_silently_after_the_resume_is_a_panic_read_from_memory(tmp_path):
    """A silences its console (log level 0) and panics right after the jump back: nothing
    reaches the serial line, the guest stops answering; the lab dumps its memory and the
    verdict's evidence is A's panic from A's own log, read from that dump."""
    code, res, run_dir = kjlab_run("checks/silent-panic-after-resume.toml", tmp_path)
    assert_a_silent_panic_read_from_memory(code, res, run_dir)
    assert "died with nothing on the console" in res["reason"]
    assert any("lkdtm_PANIC" in line for line in res["evidence"])
    (klog,) = res["kernel_logs"]
    assert klog["kernel"] == "A" and klog["step"] == "verify-A" and klog["snapshot"] == "snapshot-silent-verify-A.elf"
    text = (run_dir / klog["text"]).read_text()
    assert "kjlab: jump-out 1" in text and "Restarting tasks ... done." in text and "dumptest" in text
    assert (run_dir / klog["pages"]).stat().st_size < 2 << 20  # the log's pages, not the RAM
    report = (run_dir / "report.html").read_text()
    assert "read from memory" in report and "lkdtm_PANIC" in report


def test_a_kernel_that_resets_silently_after_the_resume_is_a_panic_read_from_the_memory_qemu_kept(tmp_path):
    """As above, but A's kernel reboots a second after its silent panic (panic=1): the
    machine ends in a reset, QEMU holds it stopped, and the lab reads A's panic from its
    memory before it quits QEMU - at once, not after the step's 60 s timeout."""
    code, res, run_dir = kjlab_run("checks/silent-reset-after-resume.toml", tmp_path)
    assert_a_silent_panic_read_from_memory(code, res, run_dir)
    assert "then the machine reset (no triple fault logged)" in res["reason"]
    events = [json.loads(line) for line in (run_dir / "qmp.log").read_text().splitlines()]
    resets = [e for e in events if e.get("event", {}).get("event") == "SHUTDOWN"
              and e["event"]["data"]["reason"] == "guest-reset"]
    assert resets, "the machine's reset is QEMU's SHUTDOWN, reason guest-reset"
    (step,) = [s for s in res["steps"] if s["name"] == "verify-A"]
    assert step["seconds"] < 40, "the reset ended the wait, not the timeout"


def test_swsusp_resumes_a_with_every_check(tmp_path):
    """The kernel's own hibernation on the default scenario's kernel and machine: A writes
    its image to the swap disk and powers off; the next boot with resume= restores it;
    A's checks hold as after a kexec jump, and its sentinel pages are back in place."""
    code, res, run_dir = kjlab_run("flows/swsusp.toml", tmp_path)
    assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
    assert code == 0
    names = [s["name"] for s in res["steps"]]
    assert names == ["artifacts", "swap-disk", "boot-A", "prepare-A", "swap-on", "snapshot-A-before", "hibernate",
                     "measure-image", "resume", "verify-A", "snapshot-A-resumed", "check-memory"]
    checks = {c["name"]: c["ok"] for c in res["checks"]}
    assert {"proof-file", "counter", "resume-log", "kernel-log-clean", "cpus-online", "kernel-is-A",
            "disk-after-resume", "no-panic"} <= set(checks) and all(checks.values())
    resume = res["memory"]["resume"]["sentinels_after_resume"]
    assert resume["ok"] and resume["found_intact"] == {"tmpfs": 1024, "anon": 1024}
    assert res["memory"]["swsusp_image"]["image_bytes"] > 1 << 20
    assert "PM: hibernation: hibernation exit" in (run_dir / "console-A-resumed.log").read_text(errors="replace")
    assert res["provenance"]["kernel"]["fragments"] == ["kexec-jump-i386.config"]  # the default scenario's kernel
    assert not qemu_processes_for(run_dir)


def test_x86_64_hibernation_on_6_12_passes(tmp_path):
    """x86_64, trixie's 6.12, no kernel patch: the same proof as on i386 (facts, x86_64)."""
    code, res, run_dir = kjlab_run("x86_64-hibernate.toml", tmp_path)
    assert res["verdict"] == "PASS", (res["reason"], res["evidence"])
    assert code == 0
    assert res["provenance"]["kernel"]["arch"] == "x86_64" and not res["provenance"]["kernel"]["patches"]
    assert res["provenance"]["machine"]["arch"] == "x86_64"
    checks = {c["name"]: c["ok"] for c in res["checks"]}
    assert checks and all(checks.values())
    assert {s["name"] for s in res["snapshots"]} == {"A-departure", "B-booted", "A-return", "A-running"}
    proof = res["memory"]["round_trip"]
    assert proof["proven"] and proof["complete"] and proof["pages_in_domain"] > 20000
    assert all(leg["pages_differing"] == 0 for leg in proof["legs"])
    leg = res["memory"]["resumed"]  # every page of A's RAM when A runs again, as on i386
    assert leg["ok"] and not leg["lost"] and leg["low_memory"]["used_after_resume"] == 0, leg["problems"]
    save = next(s for s in res["steps"] if s["name"] == "save-image")
    assert any("kj-image drop-kernel-text" in c["command"] and "turned into PT_NULL" in c["output"]
               for c in save["commands"])
    assert not qemu_processes_for(run_dir)
