"""Every flow, offline: a real run of the lab replayed through a fake guest (tests/replay.py).
The flow's steps, commands, verdict and record must come out as they did on QEMU.

The runs in tests/data/runs/ were recorded with `kjlab run` (QEMU/TCG, i386, Debian 6.1):
results.json, the console logs, qmp.log, and for a failure the tail of the cpu_reset log
and the System.map lines its evidence names (tests/trim_system_map.py)."""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import SCENARIOS_DIR
from lab.flows import FLOWS
from lab.results import RunResult
from lab.scenario import load_scenario
from lab.verdict import Verdict
from tests.replay import PAGE, RecordedRun, Replay, replay_run

RUNS = Path(__file__).resolve().parent / "data" / "runs"

# recorded run -> the scenario it ran (scenarios/), one for each flow of the registry at least
REPLAYS = {
    "i386-hibernate-pass": "i386-hibernate.toml",
    "i386-jump-roundtrip-pass": "flows/jump-roundtrip.toml",
    "i386-cycles-pass": "flows/cycles.toml",
    "i386-phys-call-pass": "flows/phys-call.toml",
    "i386-kexec-reboot-pass": "flows/kexec-reboot.toml",
    "i386-snapshot-debug-pass": "flows/snapshot-debug.toml",
    "i386-swsusp-pass": "flows/swsusp.toml",
    "i386-triple-fault-resume": "bugs/i386-triple-fault-resume.toml",
    "i386-triple-fault-direct-jump-back": "bugs/i386-triple-fault-direct-jump-back.toml",
    "x86_64-hibernate-pass": "x86_64-hibernate.toml",
}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kjr-") as d:  # short: UNIX socket paths
        yield Path(d)


def replay(name: str, tmp_path: Path, sock_dir: Path) -> tuple[RunResult, Replay, RecordedRun]:
    result, rep = replay_run(RUNS / name, load_scenario(SCENARIOS_DIR / REPLAYS[name]), tmp_path, sock_dir)
    assert rep.divergences == [], rep.divergences
    saved = json.loads((tmp_path / "results.json").read_text())  # the Recorder wrote the record
    assert saved["verdict"] == result.verdict.value and len(saved["steps"]) == len(result.steps)
    return result, rep, RecordedRun(RUNS / name)


def as_recorded(result: RunResult, rec: RecordedRun) -> None:
    """The replay ran the recorded run's steps (less `artifacts`, which it does not run)
    with the same outcomes, sent the same commands in each, and came to the same
    verdict and reason, the same checks and the same failed step."""
    assert [(s.name, s.outcome) for s in result.steps] == [(n, o) for n, o in rec.steps() if n != "artifacts"]
    for step in result.steps:
        assert [c.command for c in step.commands] == rec.commands(step.name), step.name
    assert result.verdict.value == rec.record["verdict"]
    assert result.observed_verdict is not None and result.observed_verdict.value == rec.record["observed_verdict"]
    assert result.reason == rec.record["reason"]
    assert result.failed_step == rec.record["failed_step"]
    assert [(c.name, c.ok) for c in result.checks] == [(c["name"], c["ok"]) for c in rec.record["checks"]]
    assert result.signature_matched == rec.record["signature_matched"]


def test_every_registered_flow_has_a_replay() -> None:
    flows = {json.loads((RUNS / name / "results.json").read_text())["flow"] for name in REPLAYS}
    assert flows == set(FLOWS)


@pytest.mark.parametrize("name", REPLAYS)
def test_replay_comes_out_as_recorded(name: str, tmp_path: Path, sock_dir: Path) -> None:
    result, _, rec = replay(name, tmp_path, sock_dir)
    as_recorded(result, rec)


def test_hibernate_proves_the_round_trip_on_the_replayed_memory(tmp_path: Path, sock_dir: Path) -> None:
    result, _, _ = replay("i386-hibernate-pass", tmp_path, sock_dir)
    assert result.verdict is Verdict.PASS
    proof = result.memory.round_trip
    assert proof is not None and proof.proven and [leg.holds for leg in proof.legs] == [True, True, True]
    assert result.memory.image_check is not None
    sentinels = result.memory.image_check.sentinels_in_image
    assert sentinels is not None
    assert sentinels["ok"] and sentinels["summary"] == "2048/2048 sentinel pages intact in place"  # as recorded
    assert result.memory.image_bad_ranges == ()
    assert [s["name"] for s in result.snapshots] == ["A-departure", "B-booted", "A-return", "A-running"]
    # the last leg, where A runs again: every page of A's RAM (the replay's memory: zeros
    # but for its synthetic span, and a kexec image with nothing to swap)
    leg = result.memory.resumed
    assert leg is not None and leg.ok and leg.pages == 120 << 8 and leg.equal == leg.pages, leg.problems
    assert leg.summary.startswith("every page of A's RAM from 0 to 120 MiB (30720 pages) when A ran again")
    assert "every sentinel page held" in " ".join(
        c.output for s in result.steps if s.name == "check-image" for c in s.commands)


def test_jump_roundtrip_checks_the_sentinels_the_flow_planted(tmp_path: Path, sock_dir: Path) -> None:
    result, rep, _ = replay("i386-jump-roundtrip-pass", tmp_path, sock_dir)
    assert result.verdict is Verdict.PASS
    assert [s["name"] for s in result.snapshots] == ["A-before-jump", "A-resumed"]
    assert len(rep.memory.pages) == 2 * 1024  # kj-sentinel file and anon, as the commands asked
    assert result.memory.resume is not None and result.memory.resume.changed["pages_differing"] == 0


def test_snapshot_debug_images_hold_their_moments(tmp_path: Path, sock_dir: Path) -> None:
    result, _, _ = replay("i386-snapshot-debug-pass", tmp_path, sock_dir)
    assert result.verdict is Verdict.PASS
    assert {c.name for c in result.checks if c.ok} >= {"image-1-has-moment-1", "image-1-lacks-moment-2",
                                                       "image-2-has-both"}


def test_unpatched_resume_triple_faults_as_on_qemu(tmp_path: Path, sock_dir: Path) -> None:
    """The stock kernel's resume through C: TRIPLE_FAULT in jump-back, the scenario's
    signature (#GP in restore_processor_state, GDT 0) matched: XFAIL, as the real run."""
    result, _, _ = replay("i386-triple-fault-resume", tmp_path, sock_dir)
    assert result.observed_verdict is Verdict.TRIPLE_FAULT and result.verdict is Verdict.XFAIL
    assert result.failed_step == "jump-back" and result.signature_matched
    assert any("restore_processor_state" in line for line in result.evidence)
    assert any("Triple fault" in line for line in result.evidence)
    # What was compared when A got control back, and no more: the image's pages, and the
    # low 1 MiB (unchanged in the replay's memory); the fault is in A's resume path
    assert any("pages of A the image holds were intact at return; the low 1 MiB: unchanged: the failure is in "
               "A's own resume path" in line for line in result.evidence), result.evidence
    assert not any("every page of A was intact" in line for line in result.evidence)


def test_unpatched_direct_jump_back_triple_faults_as_on_qemu(tmp_path: Path, sock_dir: Path) -> None:
    result, _, _ = replay("i386-triple-fault-direct-jump-back", tmp_path, sock_dir)
    assert result.observed_verdict is Verdict.TRIPLE_FAULT and result.verdict is Verdict.XFAIL
    assert result.failed_step == "jump-back" and result.signature_matched


def test_a_flow_that_strays_from_the_recording_does_not_pass_for_it(tmp_path: Path, sock_dir: Path) -> None:
    """The phys-call flow against kexec-reboot's run: its second command (how many CPUs?)
    gets the recorded answer of another command, and the flow says so; the record differs."""
    result, _ = replay_run(RUNS / "i386-kexec-reboot-pass", load_scenario(SCENARIOS_DIR / "flows/phys-call.toml"),
                           tmp_path, sock_dir)
    assert result.verdict is Verdict.CHECK_FAILED and result.failed_step == "boot-A"
    with pytest.raises(AssertionError):
        as_recorded(result, RecordedRun(RUNS / "i386-kexec-reboot-pass"))


def _broken_header(page: bytes) -> bytes:
    """A sentinel page whose index and region words were overwritten (as CI saw in a free
    page after a swsusp resume: index 0xfc280323, region 0x7f)."""
    return page[:16] + struct.pack("<II", 0xFC280323, 0x7F) + page[24:]


def test_swsusp_stale_broken_copy_in_free_memory_still_passes(tmp_path: Path, sock_dir: Path) -> None:
    """After resume, a page A did not keep a sentinel in holds a broken copy of one: a
    leftover of the restore, not A's state. PASS, and the record names it as stale."""
    def leftover(pages: dict[int, bytes]) -> None:
        first = min(pages)
        pages[max(pages) + 0x10 * PAGE] = _broken_header(pages[first])

    result, _ = replay_run(RUNS / "i386-swsusp-pass", load_scenario(SCENARIOS_DIR / "flows/swsusp.toml"),
                           tmp_path, sock_dir, damage={"snapshot-A-resumed": leftover})
    assert result.verdict is Verdict.PASS, (result.reason, result.evidence)
    resume = result.memory.resume
    assert resume is not None and resume.sentinels_after_resume is not None
    assert resume.sentinels_after_resume["ok"] and len(resume.sentinels_after_resume["stale_headers"]) == 1


def test_swsusp_damaged_header_at_a_sentinel_place_fails(tmp_path: Path, sock_dir: Path) -> None:
    """The same broken header where A kept a sentinel page (an intact twin elsewhere, so the
    page is not simply missing): the resume check fails on it, with its address."""
    hit: list[int] = []

    def damaged(pages: dict[int, bytes]) -> None:
        place = sorted(pages)[5]
        pages[max(pages) + 0x10 * PAGE] = pages[place]  # an intact twin in free memory
        pages[place] = _broken_header(pages[place])
        hit.append(place)

    result, _ = replay_run(RUNS / "i386-swsusp-pass", load_scenario(SCENARIOS_DIR / "flows/swsusp.toml"),
                           tmp_path, sock_dir, damage={"snapshot-A-resumed": damaged})
    assert result.verdict is Verdict.CHECK_FAILED and result.failed_step == "check-memory", result.reason
    assert any("damaged header after resume" in line and f"{hit[0]:#x}" in line for line in result.evidence), \
        result.evidence
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["memory"]["resume"]["sentinels_after_resume"]["damaged_headers"] == [f"{hit[0]:#x}"]
