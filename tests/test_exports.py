"""JUnit XML and KCIDB exports of a night's cells, from real run directories; the JUnit is
parsed back with ElementTree, the KCIDB data validated by the kcidb-io package's own schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import kcidb_io
import pytest

from lab.exports import junit_xml, kcidb_json, kcidb_status, write_exports
from lab.history import CellRecord, parse_cell_id
from lab.history import History
from tests.test_history import K61_HIBERNATE, K61_SWSUSP, K612, make_cell_run, two_nights_of_a_new_kernel

EVIL = "<script>alert(1)</script> ]]> & \"quotes\" 'apos' \x1b[31mred\x1b[0m \x00nul"

PASS_CELL = "6.1/i386/pc-virtio/hibernate/gdt-fix"
XFAIL_CELL = "6.1/i386/pc-virtio/hibernate/stock"
FAIL_CELL = "6.1/i386/q35-ahci/hibernate/gdt-fix"
XPASS_CELL = "6.12/i386/pc-virtio/hibernate/stock"
ERROR_CELL = "6.12/x86_64/pc-virtio/roundtrip/gdt-fix"
INTERRUPTED_CELL = "6.1/i386/pc-virtio/simple/gdt-fix"


def night(root: Path) -> list[CellRecord]:
    runs = [
        (PASS_CELL, "PASS", {"reason": "A is back: proof file, counter and dmesg intact"}),
        (XFAIL_CELL, "XFAIL", {"observed": "TRIPLE_FAULT", "expected": "TRIPLE_FAULT", "failed_step": "jump-back",
                               "reason": "CPU reset at jump back (expected failure TRIPLE_FAULT seen in jump-back)",
                               "evidence": ["Triple fault", "EIP=c1000000"]}),
        (FAIL_CELL, "PANIC", {"failed_step": "jump-to-B", "reason": "kernel B panicked " + EVIL,
                              "evidence": ["Kernel panic - not syncing: " + EVIL, "CPU: 0 PID: 1"]}),
        (XPASS_CELL, "XPASS", {"observed": "PASS", "expected": "TRIPLE_FAULT",
                               "reason": "A is back (expected TRIPLE_FAULT, but the run passed: the known bug did not show)"}),
        (ERROR_CELL, "ERROR", {"failed_step": "artifacts", "kernel_built": False,
                               "reason": "the lab could not complete the run: BuildError",
                               "evidence": ["make: *** [Makefile:1234: vmlinux] Error 2"]}),
        (INTERRUPTED_CELL, "INTERRUPTED", {"failed_step": "save-image", "reason": "interrupted (signal 15); partial results"}),
    ]
    cells = []
    for cell, verdict, kw in runs:
        run_dir = make_cell_run(root, cell, verdict, **kw)  # type: ignore[arg-type]
        cells.append(CellRecord.from_run(cell, parse_cell_id(cell), run_dir))
    return cells


def test_junit_counts_and_cases(tmp_path: Path) -> None:
    cells = night(tmp_path / "runs")
    text = junit_xml("nightly 2024-05-01", cells, [Path(c.run_dir) for c in cells])
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    for el in (root, suite):
        assert el.get("name") == "nightly 2024-05-01"
        assert (el.get("tests"), el.get("failures"), el.get("errors"), el.get("skipped")) == ("6", "2", "2", "0")
    assert float(suite.get("time") or 0) == pytest.approx(sum(c.seconds for c in cells))
    assert suite.get("timestamp") == "2024-05-01T10:40:00"
    cases = {f"{c.get('classname')}/{c.get('name')}": c for c in suite.findall("testcase")}
    assert list(cases) == [c.cell for c in cells]
    assert cases[PASS_CELL].get("classname") == "6.1/i386" and cases[PASS_CELL].get("name") == "pc-virtio/hibernate/gdt-fix"

    def kids(cell: str) -> list[str]:
        return [k.tag for k in cases[cell]]

    assert kids(PASS_CELL) == ["system-out"]
    assert kids(XFAIL_CELL) == ["system-out"]  # an expected failure passes, with a note
    assert "expected failure" in (cases[XFAIL_CELL].findtext("system-out") or "")
    assert kids(FAIL_CELL) == ["failure", "system-out"]
    assert kids(XPASS_CELL) == ["failure", "system-out"]
    assert kids(ERROR_CELL) == ["error", "system-out"]
    assert kids(INTERRUPTED_CELL) == ["error", "system-out"]

    failure = cases[FAIL_CELL].find("failure")
    assert failure is not None and failure.get("type") == "PANIC"
    assert "failed step: jump-to-B" in (failure.text or "") and "CPU: 0 PID: 1" in (failure.text or "")
    xpass = cases[XPASS_CELL].find("failure")
    assert xpass is not None and xpass.get("type") == "XPASS"
    assert (xpass.get("message") or "").startswith("known bug no longer shows")
    error = cases[ERROR_CELL].find("error")
    assert error is not None and error.get("type") == "ERROR" and "Error 2" in (error.text or "")
    assert cases[INTERRUPTED_CELL].find("error").get("type") == "INTERRUPTED"  # type: ignore[union-attr]
    assert float(cases[PASS_CELL].get("time") or 0) == pytest.approx(cells[0].seconds)
    out = cases[PASS_CELL].findtext("system-out") or ""
    assert f"report: {cells[0].report}" in out and cells[0].report.endswith("report.html")


def test_junit_escapes_hostile_text(tmp_path: Path) -> None:
    cells = night(tmp_path / "runs")
    text = junit_xml("night <&> ]]>", cells)  # run dirs from the records themselves
    assert "<script>" not in text and "]]>" not in text and "\x1b" not in text and "\x00" not in text
    root = ET.fromstring(text.encode())  # well-formed despite all of it
    assert root.get("name") == "night <&> ]]>"
    case = [c for c in root.iter("testcase") if c.get("classname") == "6.1/i386" and c.get("name", "").startswith("q35")][0]
    failure = case.find("failure")
    assert failure is not None
    # the text survives the round trip, control characters spelled out
    assert "<script>alert(1)</script> ]]> & \"quotes\" 'apos'" in (failure.get("message") or "")
    assert "\\x1b[31mred\\x1b[0m \\x00nul" in (failure.get("message") or "")
    assert "Kernel panic - not syncing: <script>" in (failure.text or "")


def test_kcidb_validates_with_kcidb_io(tmp_path: Path) -> None:
    cells = night(tmp_path / "runs")
    data = kcidb_json(cells, origin="kjlab", run_name="nightly-2024-05-01")
    json.dumps(data)  # plain JSON
    kcidb_io.schema.V5_0.validate_exactly(data)  # exactly the version the data declares
    kcidb_io.schema.LATEST.validate(data)  # and what the newest v5 receiver accepts
    assert kcidb_io.schema.LATEST.is_compatible(data) and data["version"] == {"major": 5, "minor": 0}

    tests = {t["misc"]["cell"]: t for t in data["tests"]}
    assert list(tests) == [c.cell for c in cells]
    assert {c: t["status"] for c, t in tests.items()} == {
        PASS_CELL: "PASS", XFAIL_CELL: "PASS", FAIL_CELL: "FAIL", XPASS_CELL: "FAIL", ERROR_CELL: "ERROR",
        INTERRUPTED_CELL: "MISS",
    }
    assert tests[XFAIL_CELL]["misc"]["known_bug"] == {"shows": True, "expected_verdict": "TRIPLE_FAULT",
                                                      "observed_verdict": "TRIPLE_FAULT", "signature_matched": True}
    assert tests[XPASS_CELL]["misc"]["known_bug"]["shows"] is False
    assert "known_bug" not in tests[PASS_CELL]["misc"]
    assert tests[PASS_CELL]["path"] == "kexec_jump.hibernate" and tests[ERROR_CELL]["path"] == "kexec_jump.roundtrip"
    assert tests[PASS_CELL]["id"] == f"kjlab:nightly-2024-05-01/{PASS_CELL}"
    assert tests[PASS_CELL]["start_time"] == "2024-05-01T10:40:00.000+00:00"
    assert tests[PASS_CELL]["environment"]["misc"]["machine"] == "pc-virtio"
    assert "log_excerpt" not in tests[PASS_CELL] and "Kernel panic" in tests[FAIL_CELL]["log_excerpt"]
    assert "\\u0000" not in json.dumps(data)  # not even in misc
    for t in data["tests"]:  # no URLs without a base_url; local paths in misc
        assert "log_url" not in t and "output_files" not in t
        assert t["misc"]["run_dir"] and t["origin"] == "kjlab"

    # one checkout per kernel source version, one build per kernel build
    builds = {b["id"]: b for b in data["builds"]}
    checkouts = {c["id"]: c for c in data["checkouts"]}
    assert tests[PASS_CELL]["build_id"] == tests[FAIL_CELL]["build_id"]  # same kernel, other machine
    assert tests[PASS_CELL]["build_id"] != tests[XFAIL_CELL]["build_id"]  # other patch set
    assert set(builds) == {t["build_id"] for t in data["tests"]}
    assert set(checkouts) == {b["checkout_id"] for b in data["builds"]}
    pass_build = builds[tests[PASS_CELL]["build_id"]]
    assert pass_build["status"] == "PASS" and pass_build["architecture"] == "i386"
    assert pass_build["misc"]["cache_key"] in pass_build["id"] and pass_build["misc"]["config_sha256"] == "ab" * 32
    assert pass_build["misc"]["patches"] == ["0001-x86-kexec-32-reload-gdt.patch"]
    assert builds[tests[XFAIL_CELL]["build_id"]]["checkout_id"] == pass_build["checkout_id"]  # both 6.1.90-1
    assert checkouts[pass_build["checkout_id"]]["misc"]["source_version"] == "6.1.90-1"
    unbuilt = builds[tests[ERROR_CELL]["build_id"]]
    assert unbuilt["status"] == "ERROR" and unbuilt["architecture"] == "x86_64"
    assert len(checkouts) == 3  # 6.1.90-1, 6.12's source version, and 6.12 whose build never knew its source


def test_kcidb_urls_and_limits(tmp_path: Path) -> None:
    root = tmp_path / "served"
    cells = night(root / "runs")
    data = kcidb_json(cells, run_name="n1", base_url="https://lab.example.org/kjlab/", base_dir=root)
    kcidb_io.schema.LATEST.validate(data)
    tests = {t["misc"]["cell"]: t for t in data["tests"]}
    fail = tests[FAIL_CELL]
    run_name = Path(cells[2].run_dir).name
    # the failed step ran on A-B: its console is the main log; the rest are output files
    assert fail["log_url"] == f"https://lab.example.org/kjlab/runs/{run_name}/console-A-B.log"
    names = [f["name"] for f in fail["output_files"]]
    assert names[:2] == ["results.json", "report.html"] and "console-A-B.log" not in names
    assert "console-C-A.log" in names and "build.log" in names
    assert tests[ERROR_CELL]["log_url"].endswith("/build.log")  # the build failed: its log
    assert all(b.get("config_url", "").endswith("/kernel.config") for b in data["builds"] if b["status"] == "PASS")

    # the default base is each run directory's parent
    default = kcidb_json(cells[:1], base_url="https://lab.example.org/r")
    assert default["tests"][0]["log_url"] == f"https://lab.example.org/r/{Path(cells[0].run_dir).name}/console-A-B.log"
    # a run outside the served directory gets no URL
    outside = kcidb_json(cells[:1], base_url="https://lab.example.org/r", base_dir=tmp_path / "elsewhere")
    assert "log_url" not in outside["tests"][0] and "output_files" not in outside["tests"][0]

    # a huge evidence is cut to KCIDB's log_excerpt limit and still validates
    big = make_cell_run(tmp_path / "big", FAIL_CELL, "HANG", failed_step="save-image", reason="timed out",
                        evidence=["x" * 100 for _ in range(500)], render=False)
    data = kcidb_json([CellRecord.from_run(FAIL_CELL, {}, big)])
    assert len(data["tests"][0]["log_excerpt"]) == 16384
    kcidb_io.schema.LATEST.validate(data)


def test_kcidb_schema_rejects_what_we_avoid(tmp_path: Path) -> None:
    """The schema constraints the export is built around, checked on kcidb-io itself."""
    cells = night(tmp_path / "runs")
    data = kcidb_json(cells)
    bad_path = json.loads(json.dumps(data))
    bad_path["tests"][0]["path"] = "kexec_jump.6.1/i386"  # '/' cannot be in a test path
    with pytest.raises(jsonschema.ValidationError):
        kcidb_io.schema.LATEST.validate(bad_path)
    bad_status = json.loads(json.dumps(data))
    bad_status["tests"][0]["status"] = "XFAIL"
    with pytest.raises(jsonschema.ValidationError):
        kcidb_io.schema.LATEST.validate(bad_status)
    local_url = json.loads(json.dumps(data))
    local_url["tests"][0]["log_url"] = "reports/runs/x/console-A-B.log"  # a path is no URI
    with pytest.raises(jsonschema.ValidationError):
        kcidb_io.schema.LATEST.validate(local_url)
    with pytest.raises(ValueError):
        kcidb_json(cells, origin="KJ-lab")  # KCIDB origins: [a-z0-9_]+
    assert kcidb_status("RUNNING") == "MISS"


def test_write_exports(tmp_path: Path) -> None:
    cells = night(tmp_path / "runs")
    paths = write_exports(tmp_path / "out", "nightly", cells, run_name="n1", origin="kjlab")
    assert paths == {"junit": tmp_path / "out" / "junit.xml", "kcidb": tmp_path / "out" / "kcidb.json",
                     "ktap": tmp_path / "out" / "results.ktap"}
    assert ET.parse(paths["junit"]).getroot().get("tests") == "6"
    data = json.loads(paths["kcidb"].read_text())
    kcidb_io.schema.LATEST.validate(data)
    assert len(data["tests"]) == 6 and data["tests"][0]["id"].startswith("kjlab:n1/")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "kcidb.json", "results.ktap"]
    # the night in KTAP, read back by the kernel's own parser: a test per cell, named by its id,
    # each passing exactly when its verdict is good (PASS, XFAIL)
    from tests.test_ktap import kunit_parser

    kp = kunit_parser()
    import kunit_printer  # loaded with kunit_parser

    top = kp.parse_run_tests(paths["ktap"].read_text().splitlines(), kunit_printer.null_printer)
    assert top.counts.errors == 0
    assert [t.name for t in top.subtests] == [c.cell for c in cells]
    assert [t.status == kp.TestStatus.SUCCESS for t in top.subtests] == [c.good for c in cells]


def test_empty_night(tmp_path: Path) -> None:
    root = ET.fromstring(junit_xml("empty", []).encode())
    assert root.get("tests") == "0"
    data = kcidb_json([])
    kcidb_io.schema.LATEST.validate(data)
    assert data["tests"] == [] and data["builds"] == [] and data["checkouts"] == []


def test_cell_without_run_dir(tmp_path: Path) -> None:
    """A cell that died before it had a run directory (as the nightly records it)."""
    rec = CellRecord(cell=ERROR_CELL, **parse_cell_id(ERROR_CELL), verdict="ERROR", observed="ERROR",
                     reason="the cell ended before it wrote any result (cell timeout)", seconds=3600.0)
    root = ET.fromstring(junit_xml("n", [rec]).encode())
    assert root.get("errors") == "1" and "cell timeout" in (root.find("testsuite/testcase/error").text or "")  # type: ignore[union-attr]
    data = kcidb_json([rec], run_name="n7", base_url="https://lab.example.org/k")
    kcidb_io.schema.LATEST.validate(data)
    [test] = data["tests"]
    assert test["status"] == "ERROR" and test["id"] == f"kjlab:n7/{ERROR_CELL}" and "log_url" not in test
    assert data["builds"][0]["status"] == "ERROR"
    assert kcidb_json([rec])["tests"][0]["id"].startswith("kjlab:export-")


def test_a_kernel_version_change_shows_next_to_the_cells(tmp_path: Path) -> None:
    """Recorded runs, two nights: 6.1 moved from 6.1.192-3 to 6.1.193-1 and its hibernate
    cell failed. Both exports say so next to the 6.1 cells, and only there."""
    with History(tmp_path / "h.sqlite") as h:
        _, n2 = two_nights_of_a_new_kernel(tmp_path, h)
        cells, cmp = list(h.cells(n2).values()), h.compare_with_previous(n2)
    paths = write_exports(tmp_path / "out", "nightly-i386", cells, comparison=cmp, run_name="night-2")
    change = "since the previous night: kernel 6.1: 6.1.192-3 -> 6.1.193-1"
    cases = {f"{c.get('classname')}/{c.get('name')}": c for c in ET.parse(paths["junit"]).getroot().iter("testcase")}
    failure = cases["6.1/i386/pc-virtio/hibernate/fixes"].find("failure")
    assert failure is not None and change in (failure.text or "")
    out = {cell: cases[cell].findtext("system-out") or "" for cell in cases}
    assert "kernel: 6.1 6.1.193-1 (release 6.1.193)\n" + change in out[K61_SWSUSP]
    assert change in out[K61_HIBERNATE]
    assert "kernel: 6.12 6.12.117-1 (release 6.12.117)" in out[K612] and "previous night" not in out[K612]

    data = json.loads(paths["kcidb"].read_text())
    kcidb_io.schema.LATEST.validate(data)
    tests = {t["misc"]["cell"]: t for t in data["tests"]}
    assert tests[K61_HIBERNATE]["misc"]["previous_source_version"] == "6.1.192-3"
    assert change in tests[K61_HIBERNATE]["log_excerpt"]
    assert tests[K61_SWSUSP]["misc"]["previous_source_version"] == "6.1.192-3"
    assert "previous_source_version" not in tests[K612]["misc"]
    # without the comparison (kjlab matrix: no history), no word of the previous night
    assert "previous night" not in junit_xml("n", cells) and "previous_source_version" not in json.dumps(kcidb_json(cells))
