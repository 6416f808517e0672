"""RunResult.memory (lab.memory.record): typed findings that read back from a recorded
results.json and write out as the same JSON, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import results
from lab.memory.record import MemoryRecord, SentinelPlanRecord, SwsuspImage

RUNS = Path(__file__).parent / "data" / "runs"
RECORDED = sorted(p.parent.name for p in RUNS.glob("*/results.json"))


@pytest.mark.parametrize("name", RECORDED)
def test_a_recorded_runs_memory_writes_out_as_it_was_recorded(name: str) -> None:
    recorded = json.loads((RUNS / name / "results.json").read_text())["memory"]
    result = results.load(RUNS / name)
    assert json.dumps(result.to_json()["memory"], indent=2) == json.dumps(recorded, indent=2)


def test_the_findings_are_named_fields() -> None:
    result = results.load(RUNS / "i386-hibernate-pass")
    mem = result.memory
    assert mem.sentinel_plan is not None and mem.sentinel_plan.pages_per_region == 1024
    assert mem.round_trip is not None and mem.round_trip.proven
    assert [leg.name for leg in mem.round_trip.legs] == ["departure = in B", "in B = on the disk", "on the disk = return"]
    assert mem.map is not None and sum(mem.map.page_counts.values()) == mem.map.total_bytes // 4096
    assert mem.swsusp_image is None
    swsusp = results.load(RUNS / "i386-swsusp-pass").memory.swsusp_image
    assert swsusp is not None and swsusp.image_bytes is not None and swsusp.image_bytes > 0


def test_findings_not_made_are_left_out_of_the_json() -> None:
    mem = MemoryRecord(sentinel_plan=SentinelPlanRecord("0x1", 2, 0), swsusp_image=SwsuspImage(4096))
    assert mem.to_json() == {"sentinel_plan": {"token": "0x1", "seed": 2, "pages_per_region": 0},
                             "swsusp_image": {"bytes_on_swap": 4096}}
    assert MemoryRecord.from_json(mem.to_json()) == mem
    assert MemoryRecord.from_json({}) == MemoryRecord() and MemoryRecord().to_json() == {}


def test_a_record_without_memory_loads(tmp_path: Path) -> None:
    data = json.loads((RUNS / "i386-cycles-pass" / "results.json").read_text())
    del data["memory"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert results.load(tmp_path).memory == MemoryRecord()
