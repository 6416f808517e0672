"""One scenario, start to end: artifacts, run directory, flow, verdict, results, report.

Whatever happens - a verdict, a lab error, Ctrl-C - results.json and the report are
written, and the QEMU processes are gone (their context managers end them).
"""

from __future__ import annotations

import errno
import itertools
import logging
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import REPORTS_DIR
from .accel import choose_accel
from .hibernation_disk import make_disk
from .artifacts.initramfs import Initramfs, build_base, build_with_payload
from .artifacts.kexec_tools import build_kexec_tools
from .artifacts.progs import build_progs
from .buildroot.build import build_initramfs as build_buildroot_initramfs
from .artifacts.kernel import KernelSpec, build_kernel
from .errors import KjlabError
from .flows import FLOWS
from .machines import machine_fragments
from .flows.base import FlowStop, Recorder
from .flows.common import FlowArtifacts, FlowContext, ResumedHook
from .lifetime import sigterm_as_interrupt
from .provenance import host_provenance
from .results import RunResult, Step
from .scenario import Scenario, check_name
from .symbols import symbolize
from .expectation import apply_expectation, step_texts
from .verdict import Verdict

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = REPORTS_DIR / "runs"


@dataclass
class RunOutcome:
    result: RunResult
    run_dir: Path
    report: Path | None


def new_run_dir(runs_root: Path, scenario: Scenario) -> tuple[str, Path]:
    """A fresh directory `<time>-<scenario>[-N]` in runs_root, made atomically: two runs of
    the same scenario in the same second get two directories (mkdir fails for the second,
    which takes the next suffix), never one shared or a FileExistsError."""
    name = check_name(str(scenario.path), "scenario.name", scenario.name)  # stays inside runs_root
    runs_root.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    for n in itertools.count(1):
        run_id = base if n == 1 else f"{base}-{n}"
        try:
            (runs_root / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, runs_root / run_id
    raise AssertionError("unreachable")


def kernel_spec(sc: Scenario) -> KernelSpec:
    """The scenario's kernel with the fragments its machine needs (disk bus, SMP, ACPI)."""
    extra = tuple(f for f in machine_fragments(sc.machine) if f not in sc.kernel.fragments)
    return replace(sc.kernel, fragments=sc.kernel.fragments + extra)


def kernel_a_spec(sc: Scenario) -> KernelSpec | None:
    """Kernel A's own build, when the scenario (or its arch) builds A apart; else None (A is B)."""
    if not sc.a_fragments:
        return None
    spec = kernel_spec(sc)
    return replace(spec, fragments=spec.fragments + tuple(f for f in sc.a_fragments if f not in spec.fragments))


def kernel_bc_spec(sc: Scenario) -> KernelSpec | None:
    """Kernels B and C, when the scenario builds them apart from A ([kernel_bc]), with the
    fragments the machine needs; None: B and C are the scenario's kernel."""
    if sc.kernel_bc is None:
        return None
    extra = tuple(f for f in machine_fragments(sc.machine) if f not in sc.kernel_bc.fragments)
    return replace(sc.kernel_bc, fragments=sc.kernel_bc.fragments + extra)


def prepare_artifacts(sc: Scenario, run_dir: Path, rec: Recorder) -> FlowArtifacts:
    """Seed steps 1-3: the kernel, the initramfs images, the hibernation disk."""
    build_log = run_dir / "build.log"
    rec.artifact("build log", build_log)
    with rec.step("artifacts", "Build or reuse kernel and initramfs; make the hibernation disk", "1-3", None):
        spec_a, spec_bc = kernel_a_spec(sc), kernel_bc_spec(sc)
        # The scenario's kernel: B's and C's, and A's unless A is built apart; with
        # [kernel_bc] it is A's alone (with A's own fragments, if any)
        kernel = build_kernel(spec_a if spec_a is not None and spec_bc is not None else kernel_spec(sc),
                              log_path=build_log)
        rec.provenance("kernel", kernel.provenance)
        shutil.copy2(kernel.config, run_dir / "kernel.config")
        rec.artifact("kernel config", run_dir / "kernel.config")
        kernel_a = kernel
        if spec_a is not None and spec_bc is None:  # kernel A built apart (a high PHYSICAL_START: makedumpfile, x86_64)
            kernel_a = build_kernel(spec_a, log_path=build_log)
            rec.provenance("kernel_a", kernel_a.provenance)
            shutil.copy2(kernel_a.config, run_dir / "kernel-A.config")
            rec.artifact("kernel A config", run_dir / "kernel-A.config")
        if spec_bc is not None:  # B and C are not A: the scenario's kernel is A's, [kernel_bc] theirs
            kernel = build_kernel(spec_bc, log_path=build_log)
            rec.provenance("kernel_bc", kernel.provenance)
            shutil.copy2(kernel.config, run_dir / "kernel-BC.config")
            rec.artifact("kernel B and C config", run_dir / "kernel-BC.config")
        base, base_provenance = build_guest_base(sc, build_log)
        initrd_a = build_with_payload(base, {"boot/bzImage": kernel.image, "boot/rootfsB.gz": base.path}, log_path=build_log)
        rec.provenance("initramfs", {**base_provenance, "base_key": base.key, "a_key": initrd_a.key})
        disk = make_disk(run_dir / "hibernation-disk.img", size_mib=sc.flow.disk_mib, log_path=build_log)
        rec.artifact("hibernation disk", disk)
        rec.note("kernel", f"{kernel.release} {kernel.image} (cached: {kernel.provenance['cached']})")
        if kernel_a is not kernel:
            rec.note("kernel A", f"{kernel_a.release} {kernel_a.image} (cached: {kernel_a.provenance['cached']})")
        rec.note("initramfs", f"base {base.path}\nA {initrd_a.path}")
    return FlowArtifacts(kernel=kernel.image, kernel_a=kernel_a.image, initrd_a=initrd_a.path,
                         initrd_c=base.path, disk=disk, system_map=kernel_a.image.parent / "System.map",
                         system_map_bc=kernel.image.parent / "System.map", release_a=kernel_a.release)


def build_guest_base(sc: Scenario, build_log: Path) -> tuple[Initramfs, dict[str, Any]]:
    """The scenario's base initramfs by its recipe, and what the provenance says of it."""
    if sc.guest.recipe == "buildroot":
        br = build_buildroot_initramfs(build_progs(build_log), without=sc.guest.buildroot_without,
                                       log_path=build_log)
        return Initramfs(path=br.path, packages=br.packages, key=br.key), br.provenance
    if sc.kexec_tools is None:
        base = build_base(sc.kernel.arch, extra_packages=sc.guest.extra_packages, log_path=build_log)
        return base, {"recipe": "debian", "packages": base.packages}
    kexec = build_kexec_tools(sc.kexec_tools, sc.kernel.arch, build_log)
    base = build_base(sc.kernel.arch, extra_packages=sc.guest.extra_packages, log_path=build_log, kexec=kexec.kexec)
    return base, {"recipe": "debian", "packages": base.packages, "kexec_tools": kexec.provenance}


def run_scenario(sc: Scenario, runs_root: Path = DEFAULT_RUNS_DIR,
                 on_step: Callable[[Step], None] | None = None, keep: str = "all",
                 on_resumed: ResumedHook | None = None) -> RunOutcome:
    """keep: "all" keeps memory snapshots and the disk image of every run; "failed" only
    of runs that did not end PASS or XFAIL (a matrix would fill the disk otherwise:
    about 1 GiB per run). on_resumed: called with A's live machine once A is back
    (flows with hands_over_resumed_a)."""
    run_id, run_dir = new_run_dir(runs_root, sc)
    accel = choose_accel(sc.machine.accel)
    result = RunResult(
        run_id=run_id, scenario=sc.name, scenario_path=str(sc.path), flow=sc.flow.name, started=time.time(),
        expected_verdict=sc.expect.verdict, quirks=dict(sc.quirks),
        provenance={**host_provenance(sc.machine.arch.info.qemu_binary), "accelerator": accel.accel,
                    "accelerator_reason": accel.reason, "machine": vars(sc.machine).copy()},
    )
    if sc.kernel_tree is not None:  # how the run was asked for: the report's reproduce block
        result.provenance["kernel_tree"] = str(sc.kernel_tree)
    if sc.patch_files:  # `kjlab run --patch`: the reproduce block repeats them
        result.provenance["patch_files"] = [str(f) for f in sc.patch_files]
    rec = Recorder(result, run_dir, on_step)
    sock_dir = Path(tempfile.mkdtemp(prefix="kjlab-"))  # mode 0700: sockets stay private
    log.info("run %s in %s (accelerator %s: %s)", run_id, run_dir, accel.accel, accel.reason)
    try:
        with sigterm_as_interrupt():
            flow: FlowContext | None = None
            try:
                art = prepare_artifacts(sc, run_dir, rec)
                flow = FLOWS[sc.flow.name](sc, art, run_dir, sock_dir, rec, accel.accel)
                flow.on_resumed = on_resumed
            except KeyboardInterrupt as e:
                _finish(result, Verdict.INTERRUPTED, f"interrupted ({e or 'SIGINT'}); partial results")
                raise
            except Exception as e:  # a KjlabError, or a bug of the lab: a record, never a bare traceback
                _finish(result, *_lab_failure(e, run_dir))
            if flow is not None:
                run_flow(flow)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
        if result.ended is None:  # an exception the lab does not handle (SystemExit): still leave a record
            _finish(result, Verdict.ERROR, "the run ended without a verdict")
        judge(result, sc, run_dir)
        if keep == "failed" and result.verdict.good:
            _drop_bulk(rec, run_dir, "after a good run (--keep failed)")
        if result.verdict is Verdict.HOST_IO_ERROR:  # the record and the report come first
            _drop_bulk(rec, run_dir, "the host's disk was full: deleted so that the record could be written")
        try:
            rec.save()
        except OSError as e:
            log.error("could not save %s: %s", run_dir / "results.json", e)
            _finish(result, Verdict.HOST_IO_ERROR, f"results.json could not be saved: {e}")
            _drop_bulk(rec, run_dir, "the host's disk was full: deleted so that the record could be written")
            try:
                rec.save()
            except OSError as again:
                log.error("results.json of %s cannot be written even so: %s", run_dir, again)
        report = _render(run_dir)
    return RunOutcome(result, run_dir, report)


def run_flow(flow: FlowContext) -> None:
    """Run a flow and write its verdict into its record: PASS, the verdict a FlowStop
    carries, or a lab error (ERROR, HOST_IO_ERROR). An interrupt is recorded and passed on."""
    result, run_dir = flow.rec.result, flow.run_dir
    try:
        flow.run()
        doubts = result.unearned_pass()
        if doubts:  # one definition of PASS: the record must hold, not only the flow's path
            log.error("%s: the flow ended without a failure, but its record does not hold: %s",
                      run_dir.name, "; ".join(doubts))
            _finish(result, Verdict.ERROR, "PASS refused: the flow ended without a failure but its record "
                    f"does not hold ({len(doubts)} doubts; a bug of the lab)", doubts)
        else:
            _finish(result, Verdict.PASS, flow.pass_reason)
    except FlowStop as stop:
        killed = flow.killed_from_outside()
        if killed is not None:  # what the flow made of a machine killed under it is no verdict
            _finish(result, killed.verdict, killed.reason,
                    [*killed.evidence, f"-- what the flow saw: {stop.verdict}: {stop.reason} --", *stop.evidence])
            return
        # Instruction pointers in the evidence get their function names (System.map).
        _finish(result, stop.verdict, stop.reason, symbolize(stop.evidence, flow.symbols))
    except KeyboardInterrupt as e:
        _finish(result, Verdict.INTERRUPTED, f"interrupted ({e or 'SIGINT'}); partial results")
        raise
    except Exception as e:  # a KjlabError, or a bug of the lab: a record, never a bare traceback
        killed = flow.killed_from_outside()
        if killed is not None:
            _finish(result, killed.verdict, killed.reason, [*killed.evidence, f"-- what the lab saw: {type(e).__name__}: {e}"])
            return
        _finish(result, *_lab_failure(e, run_dir))


HOST_IO_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)


def _lab_failure(e: Exception, run_dir: Path) -> tuple[Verdict, str, list[str]]:
    """The verdict of a run the lab could not complete: a host disk that is full or
    failing (HOST_IO_ERROR, naming the place), or another lab error (ERROR). An error
    that is not a KjlabError is a bug of the lab: its traceback goes to lab-error.log."""
    text = f"{type(e).__name__}: {e}"
    chain = [e, e.__cause__, e.__context__]
    if any(isinstance(x, OSError) and x.errno in HOST_IO_ERRNOS for x in chain) or "No space left on device" in text:
        free = shutil.disk_usage(run_dir).free if run_dir.exists() else 0
        return (Verdict.HOST_IO_ERROR, f"the host's disk failed or is full under {run_dir} ({free >> 20} MiB free)",
                text.splitlines())
    if isinstance(e, KjlabError):
        return Verdict.ERROR, f"the lab could not complete the run: {type(e).__name__}", str(e).splitlines()
    trace = run_dir / "lab-error.log"
    try:
        trace.write_text("".join(traceback.format_exception(e)))
    except OSError:
        pass
    log.error("unexpected error in the lab: %s (traceback in %s)", text, trace)
    return Verdict.ERROR, f"unexpected error in the lab: {text} (traceback in {trace.name})", text.splitlines()


def _finish(result: RunResult, verdict: Verdict, reason: str, evidence: list[str] | None = None) -> None:
    result.verdict, result.reason, result.evidence = verdict, reason, evidence or []
    result.ended = time.time()
    failed = [s for s in result.steps if s.outcome in ("failed", "interrupted")]
    result.failed_step = failed[0].name if failed else ""
    for step in result.steps:  # steps left open by an interrupt
        if step.outcome == "running":
            step.outcome, step.ended = "interrupted", result.ended


def _drop_bulk(rec: Recorder, run_dir: Path, why: str) -> None:
    """Delete the snapshots, the images and the disk image of a run (after a good run, or
    to make room on a full disk); the record says what was deleted and why."""
    freed = 0
    for snap in rec.result.snapshots:
        path = run_dir / str(snap.get("path", ""))
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
            rec.snapshot_deleted(str(snap["name"]), why)
    disk = run_dir / "hibernation-disk.img"
    if disk.is_file():
        freed += disk.stat().st_blocks * 512
        disk.unlink()
        rec.forget_artifact("hibernation disk")
    for leftover in [*run_dir.glob("*.tmp"), *run_dir.glob("image-*.elf"), *run_dir.glob("dump.elf.*")]:
        freed += leftover.stat().st_size
        leftover.unlink()
    log.info("%s: good run, %d MiB of snapshots and disk image dropped", run_dir.name, freed >> 20)


def judge(result: RunResult, sc: Scenario, run_dir: Path) -> None:
    """Apply the scenario's expectation: XFAIL / XPASS for known bugs."""
    texts = step_texts(run_dir, result, result.failed_step) if result.failed_step else []
    face = sc.expect.face_for(result.verdict)
    final, matched, note = apply_expectation(result.verdict, face.verdict, face.signature,
                                             face.step, result.failed_step, texts)
    result.observed_verdict, result.signature_matched = result.verdict, matched
    result.expected_verdict = face.verdict
    if final != result.verdict or note:
        result.verdict = final
        result.reason = f"{result.reason} ({note})" if note else result.reason


def _render(run_dir: Path) -> Path | None:
    from .report import render_report

    try:
        return render_report(run_dir)
    except Exception:  # a report bug must not hide the results.json that is already written
        log.exception("rendering the report of %s failed", run_dir)
        return None
