"""The figures of one run that the history keeps and the comparison shows: each phase's
time (prepare, save, resume: the flow's own steps) with and without the lab's instruments,
the image's size, the jumps a run made. Read from a RunResult alone; nothing here renders,
so the history (lab.history) reads figures without the report's templates (lab.compare
shows them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .results import RunResult, Step

PHASES = ("prepare", "save", "resume")
# flow -> phase -> its steps
PHASE_STEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "hibernate": {"prepare": ("load-B",), "save": ("jump-to-B", "save-image", "power-off"),
                  "resume": ("boot-C", "load-image", "jump-back")},
    "swsusp": {"prepare": ("swap-on",), "save": ("hibernate",), "resume": ("resume",)},
}
# Commands of the lab's own instruments (lab.flows.common.jump_capturing, snapshot, C's CRC-32).
INSTRUMENT_RE = re.compile(r"^(GDB: |stopped at |QMP |kj-proof crc32 )")
LS_DUMP_RE = re.compile(r"^\S+\s+\d+\s+\S+\s+\S+\s+(\d+) .* dump\.elf$", re.MULTILINE)

class NotComparable(ValueError):
    """The two runs cannot be compared (which flow, which verdict, which steps are missing)."""


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float  # the steps as run
    core: float  # without the lab's instruments
    steps: tuple[str, ...]


def phases(result: RunResult) -> dict[str, Phase]:
    """Each phase of a comparable run (NotComparable otherwise: another flow, or a run that
    did not get through its phases)."""
    if result.flow not in PHASE_STEPS:
        raise NotComparable(f"run {result.run_id} is a {result.flow!r} run; comparable flows: {', '.join(PHASE_STEPS)}")
    steps = {s.name: s for s in result.steps}
    out = {}
    for phase, names in PHASE_STEPS[result.flow].items():
        missing = [n for n in names if n not in steps or steps[n].outcome != "ok"]
        if missing:
            raise NotComparable(f"run {result.run_id} ({result.flow}, {result.verdict}) has no finished "
                                f"{', '.join(missing)} step")
        chosen = [steps[n] for n in names]
        seconds = sum(s.seconds for s in chosen)
        out[phase] = Phase(phase, seconds, seconds - sum(_instruments(s) for s in chosen), names)
    return out


def image_size(result: RunResult) -> tuple[int, str]:
    """The image as the disk holds it, in bytes, and what that is."""
    if result.flow == "hibernate":
        return _kexec_image({s.name: s for s in result.steps})
    image = result.memory.swsusp_image
    on_swap = image.image_bytes if image else None
    if on_swap is None:
        raise NotComparable(f"run {result.run_id} has no swsusp image size (a test_resume run has no measure-image step)")
    return int(on_swap), ("the swap disk's written blocks less mkswap's header and the pages A still had swapped "
                          "out after the resume: the LZO-compressed image and its metadata")


def _instruments(step: Step) -> float:
    return sum(c.seconds for c in step.commands if INSTRUMENT_RE.match(c.command))


def _kexec_image(steps: dict[str, Step]) -> tuple[int, str]:
    for c in steps["save-image"].commands:
        if m := LS_DUMP_RE.search(c.output):
            return int(m.group(1)), "dump.elf, A's memory as B copied it from /proc/vmcore (uncompressed)"
    raise NotComparable("the kexec-jump run's save-image step does not list dump.elf's size")


def cycle_figures(result: RunResult) -> dict[str, float]:
    """A hibernation cycle's figures for the history (lab.history.CellRecord.figures): the
    image size and each phase's time; {} for a run that is not a comparable cycle (another
    flow, or one that did not get through its phases)."""
    try:
        ph, (image, _) = phases(result), image_size(result)
    except NotComparable:
        return {}
    out = {"image_bytes": float(image), "cycle": round(sum(p.seconds for p in ph.values()), 3),
           "core_cycle": round(sum(p.core for p in ph.values()), 3)}
    out.update({phase: round(p.seconds, 3) for phase, p in ph.items()})
    return out


def jump_figures(result: RunResult) -> dict[str, float]:
    """How many kexec jumps from A to B the run made (its jump-to-B steps that ran to an
    end, ok or failed), for `kjlab run --repeat` to count jumps rather than runs: a cycles
    run jumps N times. {} for a run with none."""
    made = [s for s in result.steps if s.name.startswith("jump-to-B") and s.outcome in ("ok", "failed")]
    return {"jumps_to_b": float(len(made))} if made else {}
