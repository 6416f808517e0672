"""`kjlab run --repeat N`: the runs as real processes (tests/fake_cell.py, a stand-in for
`kjlab run`), the counts and the confidence bound of what they say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lab.errors import UserError
from lab.repeat import repeat_matrix, run_repeat, upper_bound
from tests.test_matrix_run import fake_cells, no_build

SCENARIO = """\
[scenario]
name = "flaky"
description = "a scenario repeated"

[machine]
name = "q35-ahci-smp2"

[flow]
name = "hibernate"

[expect]
verdict = "PASS"
"""


def test_upper_bound():
    # no failure: 1 - 0.05^(1/N), close to the rule of three
    assert upper_bound(0, 100) == pytest.approx(0.0295, abs=1e-4)
    assert upper_bound(0, 100) < 3 / 100
    # k failures: P(X <= k | N, bound) = 0.05
    for k, n in ((1, 10), (4, 40), (3, 100)):
        p = upper_bound(k, n)
        cdf = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))
        assert cdf == pytest.approx(0.05, abs=1e-6)
        assert p > k / n
    assert upper_bound(5, 5) == 1.0
    assert upper_bound(0, 0) == 1.0


def test_repeat_matrix_cells(tmp_path):
    path = tmp_path / "flaky.toml"
    path.write_text(SCENARIO)
    m = repeat_matrix(path, 12, 2)
    assert [c.patchset for c in m.cells][:2] == ["run-01", "run-02"]
    assert m.cells[-1].id == "flaky/i386/q35-ahci-smp2/hibernate/run-12"
    assert all(c.scenario["scenario"]["name"] == "flaky" for c in m.cells)
    assert m.parallel == 2
    with pytest.raises(UserError):
        repeat_matrix(path, 0, 2)
    with pytest.raises(UserError):
        repeat_matrix(path, 3, 0)


def test_repeat_counts_failures(tmp_path):
    path = tmp_path / "flaky.toml"
    path.write_text(SCENARIO)
    m = repeat_matrix(path, 5, 2)
    modes = {c.id: "pass" for c in m.cells}
    modes[m.cells[3].id] = "panic"
    seen: list[str] = []
    summary = run_repeat(path, 5, tmp_path / "runs", parallel=2, build=no_build,
                         cell_argv=fake_cells(modes, tmp_path), on_done=lambda r: seen.append(r.verdict))
    assert sorted(seen) == ["PANIC", "PASS", "PASS", "PASS", "PASS"]
    assert (summary.runs, summary.failures) == (5, 1)
    assert summary.verdicts == {"PASS": 4, "PANIC": 1}
    assert [f["run"] for f in summary.failed] == ["run-4"]
    night = Path(summary.night_dir)
    text = (night / "repeat.txt").read_text()
    assert "5 runs, 2 at once, 1 failed" in text
    assert "failure rate: 1/5" in text
    data = json.loads((night / "repeat.json").read_text())
    assert data["rate_upper_bound_95"] == pytest.approx(upper_bound(1, 5))
    assert (night / "summary.html").is_file()


def test_a_cycles_scenario_counts_its_jumps(tmp_path):
    # 4 runs of 5 round trips: 3 pass (5 jumps each), one fails at its 5th jump to B
    path = tmp_path / "flaky.toml"
    path.write_text(SCENARIO.replace('name = "hibernate"', 'name = "cycles"\ncycles = 5'))
    m = repeat_matrix(path, 4, 2)
    modes = {c.id: "pass" for c in m.cells}
    modes[m.cells[1].id] = "panic"
    summary = run_repeat(path, 4, tmp_path / "runs", parallel=2, build=no_build, cell_argv=fake_cells(modes, tmp_path))
    assert (summary.runs, summary.failures) == (4, 1)
    assert (summary.jumps, summary.jump_failures) == (20, 1)
    text = (Path(summary.night_dir) / "repeat.txt").read_text()
    assert "jumps from A to B: 20 made, 1 failed" in text
    data = json.loads((Path(summary.night_dir) / "repeat.json").read_text())
    assert data["jump_rate_upper_bound_95"] == pytest.approx(upper_bound(1, 20))


def test_a_known_bug_s_repeat_counts_the_jumps_it_broke(tmp_path):
    # a bug scenario: its expected triple fault at the jump to B shows in 3 runs of 4, and one
    # run panics instead; every failed jump counts, the expected ones included
    path = tmp_path / "bug.toml"
    path.write_text(SCENARIO.replace('[expect]\nverdict = "PASS"', '[expect]\nverdict = "TRIPLE_FAULT"\n'
                                     'step = "jump-to-B"\nsignature = "Triple fault"'))
    m = repeat_matrix(path, 4, 2)
    modes = {c.id: "xfail" for c in m.cells}
    modes[m.cells[2].id] = "panic"
    summary = run_repeat(path, 4, tmp_path / "runs", parallel=2, build=no_build, cell_argv=fake_cells(modes, tmp_path))
    assert (summary.expected, summary.shown, summary.failures) == ("TRIPLE_FAULT", 3, 1)
    assert (summary.jumps, summary.jump_failures) == (4, 4)
    text = (Path(summary.night_dir) / "repeat.txt").read_text()
    assert "the expected failure (TRIPLE_FAULT) showed in 3 of 4 runs" in text
    assert "runs not as expected: 1/4" in text and "failure rate" not in text
    assert "jumps from A to B: 4 made, 4 failed (3 of them the expected failure)" in text


def test_the_command_line_refuses_bad_repeats(tmp_path):
    from lab.cli import main

    path = tmp_path / "flaky.toml"
    path.write_text(SCENARIO)
    assert main(["run", str(path), "--repeat", "0"]) == 2
    assert main(["run", str(path), "--repeat", "3", "--parallel", "0"]) == 2
    assert main(["run", str(path), "--parallel", "2"]) == 2  # --parallel goes with --repeat
    assert main(["run", str(path), "--repeat", "3", "--bisect"]) == 2
