"""Kexec-jump hibernation against the kernel's own (swsusp): two saved runs' results.json
-> their figures side by side (image size, time to prepare, save, resume, the whole cycle)
-> comparison.html. Pure but for reading the two records and writing the page.

A cycle is split into the same three phases for both flows:
- prepare: what A does before it can hibernate (kexec -l of B; mkswap + swapon),
- save: from the moment A leaves until the machine is off (jump to B, B copies the
  image, power off; `echo disk > /sys/power/state` until QEMU is gone),
- resume: from the new machine's boot until A's shell is back (boot C, load the image,
  jump back; the boot with resume= until A's shell returns).
The lab's own instruments inside those steps (GDB breakpoints, memory snapshots, C's
CRC-32 check of the image) are counted apart: "core" is the step time without them.
Steps outside the phases (A's boot and checks, the host's proofs) are not compared.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic
from .report import environment, format_size, format_time
from .cell import cell_id
from .results import RunResult, load
from .run_figures import PHASES, NotComparable, Phase, cycle_figures, image_size, jump_figures, phases

__all__ = ["NotComparable", "cycle_figures", "jump_figures"]  # also the history's, from lab.run_figures

if TYPE_CHECKING:
    from .history import CellRecord

TEMPLATE = "comparison.html.j2"
NEED_RE = re.compile(r"Need to copy (\d+) pages")
WROTE_RE = re.compile(r"Wrote (\d+) kbytes in (\d+\.\d+) seconds")
READ_RE = re.compile(r"Read (\d+) kbytes in (\d+\.\d+) seconds")


@dataclass(frozen=True)
class FlowFigures:
    run_id: str
    scenario: str
    flow: str
    verdict: str
    kernel: str  # release and cache key
    machine: str
    image_bytes: int  # the image as the disk holds it (dump.elf; the swap disk's written blocks)
    image_note: str
    phases: dict[str, Phase]
    kernel_figures: list[str]  # the kernel's own figures (swsusp: pages copied, kbytes written/read)

    @property
    def cycle(self) -> float:
        return sum(p.seconds for p in self.phases.values())

    @property
    def core_cycle(self) -> float:
        return sum(p.core for p in self.phases.values())


@dataclass(frozen=True)
class Row:
    label: str
    kexec: str
    swsusp: str
    ratio: str  # kexec-jump / swsusp


@dataclass(frozen=True)
class Comparison:
    kexec: FlowFigures
    swsusp: FlowFigures
    rows: list[Row]
    warnings: list[str]  # not the same kernel, not the same machine


def figures(result: RunResult) -> FlowFigures:
    ph = phases(result)
    image, note = image_size(result)
    kernel = result.provenance.get("kernel", {})
    return FlowFigures(
        run_id=result.run_id, scenario=result.scenario, flow=result.flow, verdict=result.verdict.value,
        kernel=f"{kernel.get('release', '?')} (cache key {kernel.get('cache_key', '?')})",
        machine=str(result.provenance.get("machine", {}).get("name", "?")),
        image_bytes=image, image_note=note, phases=ph,
        kernel_figures=_swsusp_kernel_figures(result) if result.flow == "swsusp" else [],
    )


def _swsusp_kernel_figures(result: RunResult) -> list[str]:
    """The kernel's own figures in its messages: pages to copy, kbytes written and read."""
    steps = {s.name: s for s in result.steps}
    said = "\n".join(c.output for name in ("hibernate", "resume") for c in steps[name].commands)
    kernel_figures = []
    if m := NEED_RE.search(said):
        kernel_figures.append(f"{int(m.group(1))} pages to copy ({format_size(int(m.group(1)) * 4096)} before compression)")
    if m := WROTE_RE.search(said):
        kernel_figures.append(f"wrote {format_size(int(m.group(1)) * 1024)} in {float(m.group(2)):.2f} s (the kernel's count)")
    if m := READ_RE.search(said):
        kernel_figures.append(f"read {format_size(int(m.group(1)) * 1024)} in {float(m.group(2)):.2f} s (the kernel's count)")
    return kernel_figures


def compare(kexec: RunResult, swsusp: RunResult) -> Comparison:
    """The two runs side by side; either order of arguments is accepted."""
    if kexec.flow == "swsusp" and swsusp.flow == "hibernate":
        kexec, swsusp = swsusp, kexec
    if (kexec.flow, swsusp.flow) != ("hibernate", "swsusp"):
        raise NotComparable(f"need one hibernate run and one swsusp run, not {kexec.flow!r} and {swsusp.flow!r}")
    k, s = figures(kexec), figures(swsusp)
    rows = [Row("image size", format_size(k.image_bytes), format_size(s.image_bytes), _ratio(k.image_bytes, s.image_bytes))]
    for phase in PHASES:
        kp, sp = k.phases[phase], s.phases[phase]
        rows.append(Row(f"time to {phase}", _secs(kp.seconds, kp.core), _secs(sp.seconds, sp.core), _ratio(kp.seconds, sp.seconds)))
    rows.append(Row("whole cycle", _secs(k.cycle, k.core_cycle), _secs(s.cycle, s.core_cycle), _ratio(k.cycle, s.cycle)))
    rows.append(Row("whole cycle, core", f"{k.core_cycle:.2f} s", f"{s.core_cycle:.2f} s", _ratio(k.core_cycle, s.core_cycle)))
    warnings = []
    if k.kernel != s.kernel:
        warnings.append(f"not the same kernel: {k.kernel} against {s.kernel}")
    if k.machine != s.machine:
        warnings.append(f"not the same machine: {k.machine} against {s.machine}")
    for f in (k, s):
        if f.verdict != "PASS":
            warnings.append(f"the {f.flow} run's verdict is {f.verdict}, not PASS")
    return Comparison(k, s, rows, warnings)


def cycle_ratios(kexec: dict[str, float], swsusp: dict[str, float]) -> dict[str, float]:
    """kexec jump over swsusp for each figure both have (a nightly's per-night ratio)."""
    return {k: round(kexec[k] / swsusp[k], 3) for k in ("image_bytes", "cycle", "core_cycle", *PHASES)
            if kexec.get(k) and swsusp.get(k)}


@dataclass(frozen=True)
class NightRatio:
    """One kernel and machine of a night: kexec jump against swsusp, and the same ratio
    over the last nights (oldest first; None where a night lacks one of the two)."""
    label: str  # kernel arch machine patchset
    kexec_cycle: float
    swsusp_cycle: float
    ratios: dict[str, float]  # cycle_ratios
    trend: list[tuple[str, float | None]]  # (night, whole-cycle ratio)


def night_ratios(records: Mapping[str, CellRecord], trend: Callable[[str], list[tuple[str, dict[str, float]]]]
                 ) -> list[NightRatio]:
    """Every hibernate cell of a night whose swsusp twin (same kernel, arch, machine and
    patch set) ran too, both PASS with their figures; `trend(cell)` gives a cell's figures
    over the last nights (lab.history.History.figures_trend)."""
    out = []
    for cid, rec in sorted(records.items()):
        if rec.flow != "hibernate":
            continue
        twin = records.get(cell_id(rec.kernel, rec.arch, rec.machine, "swsusp", rec.patchset))
        if twin is None or not (rec.verdict == twin.verdict == "PASS" and rec.figures and twin.figures):
            continue
        ratios = cycle_ratios(rec.figures, twin.figures)
        history = [(night, cycle_ratios(k, s).get("cycle"))
                   for (night, k), (_, s) in zip(trend(cid), trend(twin.cell))]
        out.append(NightRatio(f"{rec.kernel} {rec.arch} {rec.machine} {rec.patchset}", rec.figures["cycle"],
                              twin.figures["cycle"], ratios, history))
    return out


def _secs(seconds: float, core: float) -> str:
    return f"{seconds:.2f} s" if abs(seconds - core) < 0.005 else f"{seconds:.2f} s ({core:.2f} s core)"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def compare_runs(first: Path, second: Path, out: Path | None = None) -> tuple[Comparison, Path]:
    """Read two run directories (a hibernate run and a swsusp run, either order) and write
    comparison.html (default: in the swsusp run's directory)."""
    a, b = load(first), load(second)
    cmp = compare(a, b)
    if out is None:
        out = (first if a.flow == "swsusp" else second) / "comparison.html"
    dirs = {a.flow: first, b.flow: second}
    links = {("kexec" if flow == "hibernate" else flow): _report_link(run_dir, out) for flow, run_dir in dirs.items()}
    html = environment().get_template(TEMPLATE).render(cmp=cmp, generated=format_time(time.time()), phases=PHASES,
                                                       links=links)
    return cmp, atomic.write_text(out, html)


def _report_link(run_dir: Path, page: Path) -> str:
    """The run's report.html relative to the comparison page, or "" when it has none."""
    report = run_dir / "report.html"
    return os.path.relpath(report.resolve(), page.resolve().parent) if report.is_file() else ""
