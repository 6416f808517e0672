"""kexec-jump hibernation against swsusp, on two saved runs of the same kernel and machine
(tests/data/runs: i386-hibernate-pass and i386-swsusp-pass, recorded on QEMU/TCG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import main
from lab.compare import NotComparable, compare, compare_runs, cycle_ratios, figures, night_ratios
from lab.history import CellRecord
from lab.results import load

RUNS = Path(__file__).resolve().parent / "data" / "runs"
KEXEC, SWSUSP = RUNS / "i386-hibernate-pass", RUNS / "i386-swsusp-pass"


def test_the_phases_are_the_steps_as_recorded() -> None:
    result = load(KEXEC)
    f = figures(result)
    steps = {s.name: s.seconds for s in result.steps}
    assert f.phases["save"].seconds == pytest.approx(steps["jump-to-B"] + steps["save-image"] + steps["power-off"])
    assert f.phases["resume"].seconds == pytest.approx(steps["boot-C"] + steps["load-image"] + steps["jump-back"])
    # the lab's instruments (GDB, snapshots, C's CRC-32) are out of the core time, and nothing else
    instruments = sum(c.seconds for s in result.steps if s.name in ("jump-to-B", "boot-C", "load-image", "jump-back",
                                                                     "save-image", "power-off")
                      for c in s.commands if c.command.startswith(("GDB: ", "stopped at ", "kj-proof crc32 ")))
    assert f.cycle - f.core_cycle == pytest.approx(instruments) and instruments > 0.5
    assert f.image_bytes == 92282880  # dump.elf as `ls -l /mnt` listed it in B


def test_kexec_jump_against_swsusp_on_the_same_kernel() -> None:
    cmp = compare(load(KEXEC), load(SWSUSP))
    assert cmp.warnings == []  # same kernel (cache key), same machine, both PASS
    rows = {r.label: r for r in cmp.rows}
    assert list(rows) == ["image size", "time to prepare", "time to save", "time to resume", "whole cycle",
                          "whole cycle, core"]
    k, s = cmp.kexec, cmp.swsusp
    assert (k.flow, s.flow) == ("hibernate", "swsusp")
    assert 0 < s.image_bytes < k.image_bytes  # LZO-compressed, only what A uses, against all of A's RAM
    assert rows["image size"].ratio == f"{k.image_bytes / s.image_bytes:.2f}×"
    assert rows["whole cycle"].ratio == f"{k.cycle / s.cycle:.2f}×"
    assert s.cycle == pytest.approx(sum(p.seconds for p in s.phases.values()))
    assert any("pages to copy" in line for line in s.kernel_figures)
    # either order
    assert compare(load(SWSUSP), load(KEXEC)) == cmp


def test_only_a_hibernate_and_a_swsusp_run_compare() -> None:
    with pytest.raises(NotComparable, match="need one hibernate run and one swsusp run"):
        compare(load(KEXEC), load(KEXEC))
    broken = load(SWSUSP)
    broken.steps = [s for s in broken.steps if s.name != "resume"]
    with pytest.raises(NotComparable, match="no finished resume step"):
        compare(load(KEXEC), broken)


def test_a_different_kernel_is_said(tmp_path: Path) -> None:
    other = load(SWSUSP)
    other.provenance = {**other.provenance, "kernel": {**other.provenance["kernel"], "cache_key": "0123456789abcdef"}}
    cmp = compare(load(KEXEC), other)
    assert len(cmp.warnings) == 1 and cmp.warnings[0].startswith("not the same kernel")


def test_the_page_and_the_command(tmp_path: Path) -> None:
    cmp, page = compare_runs(SWSUSP, KEXEC, tmp_path / "comparison.html")
    html = page.read_text()
    assert "kexec-jump hibernation against swsusp" in html
    for row in cmp.rows:
        assert f"<th>{row.label}</th>" in html
        assert row.ratio in html
    assert main(["compare", str(KEXEC), str(SWSUSP), "-o", str(tmp_path / "cli.html")]) == 0
    assert (tmp_path / "cli.html").is_file()
    assert main(["compare", str(KEXEC), str(KEXEC), "-o", str(tmp_path / "no.html")]) == 2


def test_a_night_s_ratio_per_kernel_and_machine() -> None:
    """The nightly summary's kexec-jump/swsusp ratio: only for a hibernate cell whose swsusp
    twin (same kernel, arch, machine, patch set) passed too; with the earlier nights'."""
    kexec = CellRecord.from_run("6.1/i386/pc-virtio/hibernate/0001", {}, KEXEC)
    swsusp = CellRecord.from_run("6.1/i386/pc-virtio/swsusp/0001", {}, SWSUSP)
    lone = CellRecord.from_run("6.1/i386/pc-ide/hibernate/0001", {}, KEXEC)
    records = {r.cell: r for r in (kexec, swsusp, lone)}
    past = {kexec.cell: [("mon", {}), ("tue", kexec.figures)], swsusp.cell: [("mon", swsusp.figures), ("tue", swsusp.figures)]}
    (row,) = night_ratios(records, lambda cid: past.get(cid, []))
    assert row.label == "6.1 i386 pc-virtio 0001"
    assert row.ratios["cycle"] == pytest.approx(kexec.figures["cycle"] / swsusp.figures["cycle"], abs=0.001)
    assert row.ratios["image_bytes"] > 1  # the uncompressed image against swsusp's compressed one
    assert row.trend == [("mon", None), ("tue", row.ratios["cycle"])]
    failed = {**records, swsusp.cell: CellRecord(**{**vars(swsusp), "verdict": "PANIC"})}
    assert night_ratios(failed, lambda cid: []) == []
    assert cycle_ratios({"cycle": 10.0}, {"cycle": 0.0}) == {}


def test_the_history_reads_figures_without_the_report():
    """lab.history takes a run's figures from lab.run_figures, which renders nothing: the
    SQLite history pulls in neither lab.compare nor the report's templates (the review's
    import circle 2, history -> compare -> report, gone)."""
    import subprocess
    import sys

    code = ("import sys, lab.history; "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['lab', 'compare'], ['lab', 'report'])"
            " or m == 'jinja2'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
