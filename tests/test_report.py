"""The HTML report: built from a realistic run directory on disk, no mocks."""

from __future__ import annotations

import re

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from lab.report import build_view, excerpt, format_duration, render_report
from lab.results import Check, Command, RunResult, Step, save

T0 = 1_714_560_000.0
SCRIPT = "<script>alert(1)</script>"

BEFORE = b"\x1b[0m\x1b[2JSeaBIOS BEFORE-MARKER\r\nLinux version 6.9.0 (kj@lab)\r\n"
STEP1 = (
    b"\x1b[1;32mkj-A# \x1b[0mecho hello; echo \"<KJ7:$?>\"\r\n"
    b"hello\r\n" + SCRIPT.encode() + b"\r\n"
    b"\x1b[31mSTEP1-RED\x1b[0m\r\n"
)
STEP2 = b"".join(b"kexec line %03d\r\n" % i for i in range(100)) + b"STEP2-LAST\r\n"
STEP3 = b"Starting new kernel\r\nKernel panic - not syncing: STEP3-PANIC\r\n"


def make_run(run_dir: Path, *, with_logs: bool = True) -> RunResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    o1 = len(BEFORE)
    o2 = o1 + len(STEP1)
    o3 = o2 + len(STEP2)
    o4 = o3 + len(STEP3)
    steps = [
        Step(
            name="boot_a",
            title="Boot kernel A",
            seed_step="1",
            vm="A-B",
            started=T0 + 0.5,
            ended=T0 + 8.0,
            outcome="ok",
            message="",
            commands=[Command("echo hello", 0, "hello\n" + SCRIPT, 0.02)],
            console_start=o1,
            console_end=o2,
        ),
        Step(
            name="load_b",
            title="Load kernel B with kexec -p",
            seed_step="2",
            vm="A-B",
            started=T0 + 8.0,
            ended=T0 + 20.0,
            outcome="ok",
            commands=[
                Command("kexec -l /boot/bzImage-B --reuse-cmdline", 0, "", 1.5),
                Command("cat /sys/kernel/kexec_loaded", 1, "\x1b[31m0\x1b[0m", 0.01),
            ],
            console_start=o2,
            console_end=o3,
        ),
        Step(
            name="jump",
            title="kexec jump into B",
            seed_step="5",
            vm="A-B",
            started=T0 + 20.0,
            ended=T0 + 50.0,
            outcome="failed",
            message="triple fault after jump " + SCRIPT,
            commands=[Command("kexec -e", None, "", 30.0)],
            console_start=o3,
            console_end=o4,
        ),
        Step(
            name="resume_c", title="Resume on C", seed_step="7", vm="C-A", started=T0 + 50.0, ended=T0 + 50.0, outcome="skipped"
        ),
    ]
    result = RunResult(
        run_id="20240501-120000-jump",
        scenario="jump-basic",
        scenario_path="scenarios/jump-basic.toml",
        flow="jump",
        started=T0,
        ended=T0 + 60.0,
        verdict="TRIPLE_FAULT",
        reason="CPU reset during kexec jump " + SCRIPT,
        failed_step="jump",
        evidence=["cpu-reset-A-B.log: CPU Reset (CPU 0)", "RIP=ffffffff81000000 " + SCRIPT],
        expected_verdict="PASS",
        steps=steps,
        checks=[Check("memory_intact", True, "0 of 4096 pages differ"), Check("console_clean", False, "saw " + SCRIPT)],
        provenance={
            "kernel": {"version": "6.9.0", "config": {"CONFIG_KEXEC_JUMP": "y"}},
            "qemu": {"version": "8.2.2", "argv": ["qemu-system-x86_64", "-m", "1024", "-nographic"]},
            "host": "lab1",
            "cpus": 4,
            "kvm": True,
            "load": 0.5,
            "missing": None,
            "notes": [{"what": SCRIPT}],
            "empty": {},
        },
        quirks={"no_kaslr": True, "pause_before_jump": False},
        artifacts={"kernel-A": "artifacts/bzImage-A", "gone": "artifacts/never-written"},
        snapshots=[{"name": "before-jump", "path": "snapshot-before-jump.elf", "bytes": 1024}],
    )
    save(result, run_dir)
    if with_logs:
        (run_dir / "console-A-B.log").write_bytes(BEFORE + STEP1 + STEP2 + STEP3 + b"AFTER-MARKER\r\n")
        (run_dir / "qmp.log").write_text('{"execute": "qmp_capabilities"}\n')
        (run_dir / "qemu-A-B.log").write_text("qemu-system-x86_64: terminating on signal 15\n")
        (run_dir / "cpu-reset-A-B.log").write_text("CPU Reset (CPU 0)\n")
        (run_dir / "snapshot-before-jump.elf").write_bytes(b"\x7fELF" + bytes(1020))
        (run_dir / "artifacts").mkdir()
        (run_dir / "artifacts" / "bzImage-A").write_bytes(b"MZ" + bytes(100))
    return result


class Page(HTMLParser):
    """Collects links, ids and the console excerpt text per step."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.consoles: dict[str, str] = {}
        self.open_steps: list[str] = []
        self._details: str | None = None
        self._in_console = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        if tag == "details":
            self._details = a.get("id")
            if "open" in a:
                self.open_steps.append(a.get("id") or "")
        if tag == "pre" and "console" in (a.get("class") or "").split():
            self._in_console = True
            self.consoles[self._details or ""] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_console = False
        if tag == "details":
            self._details = None

    def handle_data(self, data: str) -> None:
        if self._in_console:
            self.consoles[self._details or ""] += data


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


def console_of(page: Page, step_name: str) -> str:
    [key] = [k for k in page.consoles if k.endswith("-" + step_name)]
    return page.consoles[key]


def test_report_shows_verdict_and_steps(tmp_path: Path) -> None:
    make_run(tmp_path)
    path = render_report(tmp_path)
    assert path == tmp_path / "report.html"
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "TRIPLE_FAULT" in html
    for name in ("boot_a", "load_b", "jump", "resume_c"):
        assert name in html
    assert "Boot kernel A" in html and "kexec jump into B" in html
    assert "jump-basic" in html and "20240501-120000-jump" in html
    assert "memory_intact" in html and "console_clean" in html
    assert "no_kaslr" in html and "CONFIG_KEXEC_JUMP" in html
    view = build_view(tmp_path)
    rows = {(r.key, r.depth): r for r in view.provenance}
    assert rows[("kernel", 0)].heading and rows[("CONFIG_KEXEC_JUMP", 2)].value == "y"
    assert rows[("argv", 1)].value == "qemu-system-x86_64, -m, 1024, -nographic"
    assert rows[("cpus", 0)].value == "4" and rows[("kvm", 0)].value == "true" and rows[("missing", 0)].value == "—"
    assert rows[("what", 2)].value == SCRIPT and rows[("empty", 0)].value == "(empty)"
    assert "30.0 s" in html  # the jump step's duration
    page = parse(html)
    # the failed step is expanded, the passing ones are not
    assert [i for i in page.open_steps if i.endswith("-jump")]
    assert not [i for i in page.open_steps if i.endswith("-boot_a")]
    # every in-page link has a target
    for href in page.hrefs:
        if href.startswith("#"):
            assert href[1:] in page.ids


def test_guest_output_is_escaped(tmp_path: Path) -> None:
    make_run(tmp_path)
    html = render_report(tmp_path).read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # console, command output, reason, evidence, message, check, provenance
    assert html.count("&lt;script&gt;") >= 7


def test_excerpt_is_the_steps_slice(tmp_path: Path) -> None:
    make_run(tmp_path)
    page = parse(render_report(tmp_path).read_text())
    first = console_of(page, "boot_a")
    assert "hello" in first and SCRIPT in first and "STEP1-RED" in first
    assert "kj-A# echo hello" in first  # ANSI removed around the prompt
    for outside in ("BEFORE-MARKER", "Linux version", "kexec line", "STEP2-LAST", "STEP3-PANIC", "AFTER-MARKER"):
        assert outside not in first
    assert "\x1b" not in first and "\r" not in first and "[1;32m" not in first

    second = console_of(page, "load_b")
    lines = second.strip("\n").split("\n")
    assert len(lines) == 60 and lines[-1] == "STEP2-LAST" and lines[0] == "kexec line 041"
    assert "STEP1-RED" not in second and "STEP3-PANIC" not in second
    assert "… 41 earlier lines" in render_report(tmp_path).read_text()

    third = console_of(page, "jump")
    assert "STEP3-PANIC" in third and "AFTER-MARKER" not in third and "STEP2-LAST" not in third


def test_links_point_to_existing_files(tmp_path: Path) -> None:
    make_run(tmp_path)
    page = parse(render_report(tmp_path).read_text())
    files = [h for h in page.hrefs if not h.startswith("#")]
    for href in files:
        assert "://" not in href and not href.startswith("/")
        assert (tmp_path / unquote(href)).is_file(), href
    for expected in (
        "console-A-B.log",
        "qemu-A-B.log",
        "qmp.log",
        "cpu-reset-A-B.log",
        "results.json",
        "artifacts/bzImage-A",
        "snapshot-before-jump.elf",
    ):
        assert expected in files
    assert "artifacts/never-written" not in files  # a missing artifact is listed, not linked


def test_missing_logs_still_render(tmp_path: Path) -> None:
    make_run(tmp_path, with_logs=False)
    html = render_report(tmp_path).read_text()
    assert "TRIPLE_FAULT" in html
    assert "console-A-B.log is missing" in html
    assert "console-C-A.log is missing" in html
    page = parse(html)
    assert page.consoles == {}
    for href in page.hrefs:
        if not href.startswith("#"):
            assert (tmp_path / unquote(href)).is_file()


def test_interrupted_run(tmp_path: Path) -> None:
    """Killed mid-step: no end times, no console_end; the excerpt runs to the end of the log."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log_bytes = b"boot\r\n" + b"\x1b[1mjumping\x1b[0m\r\nlast words\r\n"
    (run_dir / "console-A-B.log").write_bytes(log_bytes)
    result = RunResult(
        run_id="r2",
        scenario="jump-basic",
        scenario_path="scenarios/jump-basic.toml",
        flow="jump",
        started=T0,
        verdict="INTERRUPTED",
        steps=[
            Step(name="jump", title="Jump", seed_step="5", vm="A-B", started=T0 + 1, outcome="interrupted", console_start=6)
        ],
    )
    save(result, run_dir)
    html = render_report(run_dir).read_text()
    page = parse(html)
    text = console_of(page, "jump")
    assert "jumping" in text and "last words" in text and "boot" not in text
    assert "INTERRUPTED" in html and "step did not finish" in html
    view = build_view(run_dir)
    assert view.verdict.css == "interrupted"
    assert view.timeline[0].left.endswith("%") and view.duration.endswith("(no end recorded)")


def test_no_steps_at_all(tmp_path: Path) -> None:
    save(RunResult(run_id="r3", scenario="s", scenario_path="s.toml", flow="jump", started=T0), tmp_path)
    html = render_report(tmp_path).read_text()
    assert "RUNNING" in html and "no steps recorded" in html


def test_verdict_colours(tmp_path: Path) -> None:
    make_run(tmp_path)
    view = build_view(tmp_path)
    assert view.verdict.css == "fail" and view.expected.css == "pass"
    assert [s.css for s in view.steps] == ["pass", "pass", "fail", "skipped"]
    assert view.timeline[0].left == "0.83%"  # 0.5 s of 60 s
    assert view.timeline[2].width == "50.00%"  # 30 s of 60 s
    from lab.report import verdict_class

    for verdict, css in [
        ("PASS", "pass"),
        ("PANIC", "fail"),
        ("HANG", "fail"),
        ("KEXEC_ERROR", "fail"),
        ("CHECK_FAILED", "fail"),
        ("CORRUPT_IMAGE", "fail"),
        ("ERROR", "error"),
        ("INTERRUPTED", "interrupted"),
        ("XFAIL", "xfail"),
        ("XPASS", "xpass"),
    ]:
        assert verdict_class(verdict) == css


def test_excerpt_and_durations(tmp_path: Path) -> None:
    log = tmp_path / "console-X.log"
    log.write_bytes(b"a\r\nb\x1b[32m\xffc\r\nd\n")
    ex = excerpt(log, 3, None, max_lines=1)
    assert ex.text == "d" and ex.note == "… 1 earlier line"
    ex = excerpt(log, 0, 1000)
    assert ex.text == "a\nb\ufffdc\nd" and "shorter than the recorded range" in ex.note
    assert excerpt(log, 5, 5).text is None
    assert excerpt(tmp_path / "nope.log", 0, 10).note.startswith("nope.log is missing")
    assert format_duration(0.25) == "250 ms"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3725) == "1 h 02 min"
    assert format_duration(None) == "—"


# -- dates, evidence anchors, the reproduce block (issue 13) -----------------------------

RUNS = Path(__file__).parent / "data" / "runs"


class EvidencePage(Page):
    """Page, plus the evidence lines with their links and every id in order (duplicates too)."""

    def __init__(self) -> None:
        super().__init__()
        self.evidence: list[tuple[str | None, str]] = []  # (href, text) per line
        self.all_ids: list[str] = []
        self.titles: list[str] = []
        self._in_evidence = False
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        if a.get("id"):
            self.all_ids.append(a["id"] or "")
        if a.get("title"):
            self.titles.append(a["title"] or "")
        if tag == "pre" and "evidence" in (a.get("class") or "").split():
            self._in_evidence = True
            self.evidence = [(None, "")]
        if self._in_evidence and tag == "a":
            self._href = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        super().handle_endtag(tag)
        if tag == "pre":
            self._in_evidence = False
        if tag == "a":
            self._href = None

    def handle_data(self, data: str) -> None:
        super().handle_data(data)
        if not self._in_evidence:
            return
        for i, part in enumerate(data.split("\n")):
            if i:
                self.evidence.append((None, ""))
            if part:
                href, text = self.evidence[-1]
                self.evidence[-1] = (href or self._href, text + part)


def parse_evidence(html: str) -> EvidencePage:
    p = EvidencePage()
    p.feed(html)
    p.close()
    return p


def saved_run(tmp_path: Path, name: str) -> Path:
    import shutil

    run_dir = tmp_path / name
    shutil.copytree(RUNS / name, run_dir)
    return run_dir


def test_triple_fault_evidence_links_to_its_console_lines(tmp_path: Path) -> None:
    """The real triple-fault run: each console line of the evidence links to that line of
    console-C-A.log, in the failed step's excerpt or the step before it; the cpu_reset
    lines, the QMP event and the later step link to their own sections."""
    import re

    from lab.evidence import clean
    from lab.results import load

    run_dir = saved_run(tmp_path, "i386-triple-fault-resume")
    result = load(run_dir)
    page = parse_evidence(render_report(run_dir).read_text())
    assert len(page.all_ids) == len(set(page.all_ids)), "duplicate ids"
    assert [text for _, text in page.evidence] == [clean(e) for e in result.evidence]

    log_lines = [clean(x) for x in (run_dir / "console-C-A.log").read_bytes().decode(errors="replace").split("\n")]
    links = dict(zip(result.evidence, (href for href, _ in page.evidence)))
    console_evidence = result.evidence[1:9]  # between "-- last console lines --" and "-- QEMU -d cpu_reset --"
    assert console_evidence[-1].endswith("kexec_core: Starting new kernel")
    numbers = []
    for line in console_evidence:
        href = links[line]
        assert href is not None and (m := re.fullmatch(r"#console-C-A-L(\d+)", href)), (line, href)
        n = int(m.group(1))
        assert log_lines[n - 1] == line  # the very line, 1-based
        assert href[1:] in page.ids  # and the target is on the page
        numbers.append(n)
    assert numbers == list(range(numbers[0], numbers[0] + 8))  # the log's last 8 lines, in order
    assert numbers[-1] == len(log_lines) - 1  # the last line of the log (it ends with a newline)

    # the failed step's own line is anchored in the failed step's excerpt
    jump_back = next(k for k in page.consoles if k.endswith("-jump-back"))
    assert "kexec_core: Starting new kernel" in page.consoles[jump_back]
    view = build_view(run_dir)
    [failed] = [s for s in view.steps if s.name == "jump-back"]
    assert f"console-C-A-L{numbers[-1]}" in [r.id for r in failed.excerpt.rows]
    assert all(r.evidence for r in failed.excerpt.rows if r.id == f"console-C-A-L{numbers[-1]}")

    # the steps holding linked lines are open (a link into a closed <details> shows nothing)
    assert {i.split("-", 2)[2] for i in page.open_steps if not i.startswith("kernel-log-")} == {"jump-back", "load-image"}
    # A's log, read from the memory QEMU kept after the triple fault: heading and lines link to it
    from_memory = result.evidence.index(next(e for e in result.evidence if "read from memory" in e))
    said = result.evidence.index(next(e for e in result.evidence if "check-round-trip:" in e))
    assert {links[e] for e in result.evidence[from_memory:said]} == {"#kernel-log-0"} and "kernel-log-0" in page.ids
    # what the return's memory showed links to its step; the low pages it names, to the memory section
    assert links[result.evidence[said]] == "#step-13-check-round-trip"
    assert {links[e] for e in result.evidence[said + 1:]} == {"#memory"}
    assert any("kjlab: jump-out 1" in e for e in result.evidence[from_memory:])
    tf = [e for e in result.evidence if e.strip() == "Triple fault"]
    assert links[tf[0]] == "#log-cpu-reset-C-A-log" and "log-cpu-reset-C-A-log" in page.ids
    qmp = [e for e in result.evidence if e.startswith("QMP event")]
    assert links[qmp[0]] == "#log-qmp-log" and "log-qmp-log" in page.ids
    later = result.evidence[said]
    assert later.startswith("-- then, at check-round-trip") and links[later] == "#" + next(
        s.anchor for s in view.steps if s.name == "check-round-trip")
    for href, _ in page.evidence:
        if href:
            assert href[1:] in page.ids


def test_evidence_prefers_the_failed_steps_slice(tmp_path: Path) -> None:
    """A line seen in an earlier step and again in the failed step links to the failed step's."""
    make_run(tmp_path)
    log = tmp_path / "console-A-B.log"
    # "kexec line 050" again inside the failed step (jump), then the panic
    data = log.read_bytes().replace(STEP3, b"kexec line 050\r\n" + STEP3)
    log.write_bytes(data)
    from lab.results import load

    result = load(tmp_path)
    result.steps[2].console_end += len(b"kexec line 050\r\n")
    result.evidence = ["kexec line 010", "not in any log", "-- last console lines --", "kexec line 050",
                       "Starting new kernel", "Kernel panic - not syncing: STEP3-PANIC"]
    save(result, tmp_path)
    view = build_view(tmp_path)
    lines = data.decode().replace("\r", "").split("\n")
    hrefs = {e.text: e.href for e in view.evidence}
    panic_no = lines.index("Kernel panic - not syncing: STEP3-PANIC") + 1
    assert hrefs["Kernel panic - not syncing: STEP3-PANIC"] == f"#console-A-B-L{panic_no}"
    assert hrefs["kexec line 050"] == f"#console-A-B-L{panic_no - 2}"  # the failed step's copy, not load_b's
    assert lines.index("kexec line 050") + 1 < panic_no - 2  # (load_b's copy is earlier)
    # an earlier line outside the 60 shown of its step: the excerpt grows to show it
    early = lines.index("kexec line 010") + 1
    assert hrefs["kexec line 010"] == f"#console-A-B-L{early}"
    [load_b] = [s for s in view.steps if s.name == "load_b"]
    assert f"console-A-B-L{early}" in [r.id for r in load_b.excerpt.rows]
    assert hrefs["not in any log"] is None and hrefs["-- last console lines --"] is None
    page = parse_evidence(render_report(tmp_path).read_text())
    assert len(page.all_ids) == len(set(page.all_ids))
    for href in page.hrefs:
        if href.startswith("#"):
            assert href[1:] in page.ids


def test_times_are_dates(tmp_path: Path, monkeypatch: "pytest.MonkeyPatch") -> None:
    import time

    from lab.report import format_time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert format_time(T0) == "2024-05-01 12:40:00+02:00"  # local time, ISO 8601 with the offset
        make_run(tmp_path)
        from lab.results import load

        result = load(tmp_path)
        result.snapshots[0]["taken"] = T0 + 30.5
        save(result, tmp_path)
        html = render_report(tmp_path).read_text()
        page = parse_evidence(html)
        assert "2024-05-01 12:40:00+02:00" in html  # started
        assert "2024-05-01 12:41:00+02:00" in html  # ended
        assert "2024-05-01 12:40:30+02:00" in html  # the snapshot's time
        assert "e+09" not in html and "1714560030.5" not in html.replace("epoch 1714560030.5", "")
        assert "epoch 1714560030.5" in page.titles  # the raw value stays in a title
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    for name in ("i386-triple-fault-resume", "i386-hibernate-pass"):
        html = render_report(saved_run(tmp_path, name)).read_text()
        # no raw epoch (1.79e+09, 1790000000.5) outside the titles that keep it
        assert "e+09" not in html and not re.search(r"(?<!epoch )\b1[5-9]\d{8}(\.\d+)?\b", html)


def test_reproduce_block_of_a_saved_run(tmp_path: Path) -> None:
    import shlex

    from lab.cli import _parser

    view = build_view(saved_run(tmp_path, "i386-triple-fault-resume"))
    r = view.reproduce
    assert r.command == "kjlab run /work/main/scenarios/bugs/i386-triple-fault-resume.toml"
    assert r.one_liner == ("git checkout 1f61878026c2 && ./bootstrap.sh && "  # the recording's commit
                           ".venv/bin/kjlab run scenarios/bugs/i386-triple-fault-resume.toml")
    assert "\n" not in r.one_liner
    args = _parser().parse_args(shlex.split(r.command)[1:])
    assert args.func.__name__ == "cmd_run" and str(args.scenario) == view.scenario_path and args.kernel_tree is None
    facts = dict(r.facts)
    assert facts["kjlab"] == "1f61878026c2 + uncommitted changes"
    assert facts["kernel"] == "debian:linux-source-6.1 6.1.192-3 (release 6.1.192)"
    assert facts["kernel patches"] == "none" and facts["kernel fragments"] == "kexec-jump-i386.config"
    assert facts["QEMU"].startswith("QEMU emulator version 7.2")
    assert any("uncommitted changes" in n for n in r.notes)
    html = render_report(view_dir := tmp_path / "i386-triple-fault-resume").read_text()
    assert 'id="reproduce"' in html and "git checkout 1f61878026c2 &amp;&amp; ./bootstrap.sh" in html
    assert view_dir.is_dir()


def test_reproduce_block_with_a_kernel_tree_and_old_runs(tmp_path: Path) -> None:
    import shlex

    from lab.cli import _parser
    from lab.report import reproduce_view

    root = tmp_path / "kj lab"
    result = RunResult(run_id="r", scenario="s", scenario_path=str(root / "scenarios" / "i386-hibernate.toml"),
                       flow="hibernate", started=T0, provenance={
                           "kjlab_commit": "abcdef012345", "kjlab_root": str(root), "kernel_tree": "/src/linux it",
                           "qemu": "QEMU emulator version 8.2.2",
                           "kernel": {"source": "tree:/src/linux it", "source_version": "6.9.0-rc1", "release": "6.9.0",
                                      "fragments": ["a.config", "b.config"], "patches": ["fix/one.patch"]}})
    r = reproduce_view(result)
    assert shlex.split(r.command) == ["kjlab", "run", str(root / "scenarios/i386-hibernate.toml"),
                                      "--kernel-tree", "/src/linux it"]
    args = _parser().parse_args(shlex.split(r.command)[1:])
    assert str(args.kernel_tree) == "/src/linux it"
    assert r.one_liner == ("git checkout abcdef012345 && ./bootstrap.sh && "
                           ".venv/bin/kjlab run scenarios/i386-hibernate.toml --kernel-tree '/src/linux it'")
    facts = dict(r.facts)
    assert facts["kernel patches"] == "fix/one.patch" and facts["kernel tree"] == "/src/linux it"
    assert facts["kjlab"] == "abcdef012345" and not r.notes

    # a run from before the commit was recorded; a matrix cell's scenario
    old = RunResult(run_id="r", scenario="s", scenario_path="/runs/night-1/cells/hib-6-1.toml", flow="hibernate",
                    started=T0)
    r = reproduce_view(old)
    assert r.commit == "unknown" and dict(r.facts)["kjlab"] == "unknown" and dict(r.facts)["QEMU"] == "unknown"
    assert r.one_liner == "./bootstrap.sh && .venv/bin/kjlab run /runs/night-1/cells/hib-6-1.toml"
    assert any("not recorded" in n for n in r.notes) and any("matrix cell" in n for n in r.notes)
    # from an installed wheel
    wheel = RunResult(run_id="r", scenario="s", scenario_path="/x/s.toml", flow="hibernate", started=T0,
                      provenance={"kjlab_commit": "kjlab 0.1.0 (installed)"})
    assert reproduce_view(wheel).one_liner == "pip install kjlab==0.1.0 && kjlab run /x/s.toml"


def test_provenance_records_the_commit_and_the_kernel_tree(tmp_path: Path) -> None:
    from lab import REPO_ROOT
    from lab.provenance import host_provenance
    from lab.scenario import load_scenario, with_kernel_tree

    prov = host_provenance("/nonexistent/qemu")
    assert prov["qemu"] == "unknown" and prov["kjlab_root"] == str(REPO_ROOT)
    assert prov["kjlab_commit"] != "unknown"  # a checkout: its commit (git describe), "-dirty" if changed
    sc = load_scenario(REPO_ROOT / "scenarios" / "i386-hibernate.toml")
    assert sc.kernel_tree is None
    tree = with_kernel_tree(sc, tmp_path).kernel_tree
    assert tree == tmp_path.resolve()


def add_memory_log(run_dir: Path, text: str) -> None:
    """A kernel log read from memory, as lab.flows.base.Recorder.kernel_log records it."""
    from lab.results import load

    result = load(run_dir)
    (run_dir / "kernel-log-silent-jump.txt").write_text(text)
    (run_dir / "kernel-log-silent-jump.elf").write_bytes(b"\x7fELF")
    result.kernel_logs.append({"name": "silent-jump", "kernel": "A", "release": "6.1.192",
                               "snapshot": "snapshot-silent-jump.elf", "text": "kernel-log-silent-jump.txt",
                               "pages": "kernel-log-silent-jump.elf", "lines": text.count("\n"), "step": "jump"})
    save(result, run_dir)


def test_a_kernel_log_read_from_memory_is_shown_whole_and_marked(tmp_path: Path) -> None:
    make_run(tmp_path)
    lines = [f"[    0.{i:06d}] boot line {i}" for i in range(300)]
    lines += ["[    6.055406] Kernel panic - not syncing: " + SCRIPT, "[    6.055406] \x07bell\x1b[31m red"]
    add_memory_log(tmp_path, "\n".join(lines) + "\n")
    html = render_report(tmp_path).read_text()
    assert "Kernel logs read from memory" in html and "read from memory" in html
    assert "boot line 0<" not in html and "boot line 0\n" in html and "boot line 299" in html  # whole, not an excerpt
    # guest text is text: escaped, controls shown as U+FFFD, no escape sequences
    assert "<script" not in html.lower() and "not syncing: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x07" not in html and "\x1b" not in html and "\ufffdbell" in html
    page = parse(html)
    for href in page.hrefs:
        if href.startswith("#"):
            assert href[1:] in page.ids  # the link to the step it was read in
        else:
            assert (tmp_path / unquote(href)).is_file(), href
    assert "kernel-log-silent-jump.txt" in page.hrefs and "kernel-log-silent-jump.elf" in page.hrefs
    (view,) = build_view(tmp_path).kernel_logs
    assert view.title == "kernel A (6.1.192)" and view.lines == 302 and view.step_anchor and view.step_anchor.endswith("-jump")


def test_evidence_read_from_memory_links_to_its_log(tmp_path: Path) -> None:
    """A verdict's evidence quoting a kernel log read from memory links, heading and lines,
    to that log's place in the report; the console lines after it are console lines again."""
    from lab.results import load

    make_run(tmp_path)
    add_memory_log(tmp_path, "[    6.1] Kernel panic - not syncing: dumptest\n")
    result = load(tmp_path)
    result.evidence = ["-- kernel A's log, read from memory (snapshot-silent-jump.elf) --",
                       "[    6.1] Kernel panic - not syncing: dumptest", "-- the console --", "some console line"]
    save(result, tmp_path)
    view = build_view(tmp_path)
    links = [(e.text, e.href) for e in view.evidence]
    assert links[0][1] == links[1][1] == "#kernel-log-0"
    assert links[3][1] != "#kernel-log-0"
    assert 'id="kernel-log-0"' in render_report(tmp_path).read_text()


def test_a_missing_memory_log_file_still_renders(tmp_path: Path) -> None:
    make_run(tmp_path)
    add_memory_log(tmp_path, "x\n")
    (tmp_path / "kernel-log-silent-jump.txt").unlink()
    html = render_report(tmp_path).read_text()
    assert "kernel-log-silent-jump.txt cannot be read" in html and "missing" in html
    (view,) = build_view(tmp_path).kernel_logs
    assert view.text is None and view.text_link.href is None


def test_a_run_without_memory_logs_has_no_such_section(tmp_path: Path) -> None:
    make_run(tmp_path)
    assert "Kernel logs read from memory" not in render_report(tmp_path).read_text()
