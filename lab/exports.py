"""A night's cells for other tools: KTAP (lab.ktap), JUnit XML (CI test views) and KernelCI
KCIDB I/O data.

Both are built from the cells' :class:`lab.history.CellRecord` and, for what the history
does not keep (evidence, provenance, start times), from each run's results.json.

JUnit: one ``<testsuite>``; a ``<testcase>`` per cell with ``classname`` = ``kernel/arch``
and ``name`` = ``machine/flow/patchset``. PASS and XFAIL (the known bug showed, as expected)
pass; the failure verdicts and XPASS (the known bug no longer shows) are ``<failure>``;
ERROR, INTERRUPTED and any unfinished verdict are ``<error>``. Every cell has a
``<system-out>`` with its verdicts, kernel version and report path. Text goes through ElementTree (escaped),
and characters XML 1.0 cannot carry at all (console control bytes such as ESC) are written
as ``\\xNN``.

KCIDB: schema v5 (the data says v5.0, whose fields are all this uses, so any v5 receiver
takes it). One checkout per kernel source version, one build per kernel build (its
content-addressed cache key), one test per cell, with path ``kexec_jump.<flow>``; the
machine is the test's environment. Status: PASS -> PASS, XFAIL -> PASS with
``misc.known_bug``, failure verdicts -> FAIL, XPASS -> FAIL with ``misc.known_bug``,
ERROR -> ERROR, INTERRUPTED (and an unfinished run) -> MISS. URLs (``log_url``,
``output_files``, ``config_url``) are only given when a ``base_url`` says where the run
directories are served; local paths go to ``misc``. The project itself does not need the
kcidb-io package; the tests validate with it.

Given the night's comparison with the previous one (lab.history.Comparison), a cell whose
kernel's source version changed since says so: in its JUnit failure or error text and
``<system-out>``, and in its KCIDB test's ``log_excerpt`` and ``misc.previous_source_version``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import atomic
from .history import CellRecord, Comparison, VersionChange
from .ktap import ktap_document
from .results import RunResult, load
from .verdict import Verdict

KCIDB_VERSION = {"major": 5, "minor": 0}
LOG_EXCERPT_MAX = 16384  # KCIDB's maxLength for log_excerpt
ORIGIN_RE = re.compile(r"^[a-z0-9_]+$")  # KCIDB's origin pattern

RunDirs = Mapping[str, "Path | str"] | Sequence["Path | str"] | None

# Characters XML 1.0 cannot carry, escaped or not (ElementTree would write them as they
# are and produce a document no parser reads).
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PATH_BAD = re.compile(r"[^A-Za-z0-9_-]")
_ARCH_BAD = re.compile(r"[^a-z0-9_]")
# The files of a run directory worth linking, the most telling first (no disk images or snapshots).
_LOG_GLOBS = ("results.json", "report.html", "console-*.log", "build.log", "cpu-reset-*.log", "qemu-*.log",
              "qmp.log", "kernel.config", "kernel-A.config")


def outcome(verdict: str) -> str:
    """``pass``, ``failure`` or ``error``: how a verdict counts in a test report."""
    return Verdict.parse(verdict).junit


def kcidb_status(verdict: str) -> str:
    return Verdict.parse(verdict).kcidb


# -- common -------------------------------------------------------------------------------


def _run_dirs(cells: Sequence[CellRecord], run_dirs: RunDirs) -> dict[str, Path | None]:
    """Each cell's run directory: from `run_dirs` (by cell id, or a list in the cells'
    order) or else the record's own run_dir."""
    out: dict[str, Path | None] = {}
    if run_dirs is not None and not isinstance(run_dirs, Mapping):
        run_dirs = list(run_dirs)
        if len(run_dirs) != len(cells):
            raise ValueError(f"{len(run_dirs)} run directories for {len(cells)} cells")
        run_dirs = {c.cell: d for c, d in zip(cells, run_dirs)}
    for c in cells:
        d = (run_dirs or {}).get(c.cell) or c.run_dir
        out[c.cell] = Path(d) if d else None
    return out


def _load(run_dir: Path | None) -> RunResult | None:
    if run_dir is None:
        return None
    try:
        return load(run_dir)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _iso(t: float | None) -> str | None:
    if not t:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _version_change(comparison: Comparison | None, rec: CellRecord) -> VersionChange | None:
    return comparison.version_change(rec.cell) if comparison is not None else None


def _kernel_line(rec: CellRecord) -> str | None:
    if not rec.source_version:
        return None
    return f"kernel: {rec.kernel} {rec.source_version}" + (f" (release {rec.release})" if rec.release else "")


def _details(rec: CellRecord, res: RunResult | None, version: VersionChange | None = None) -> str:
    lines = [rec.reason or "(no reason recorded)"]
    if rec.verdict == Verdict.XPASS:
        lines.insert(0, f"known bug no longer shows (expected {rec.expected}, observed {rec.observed})")
    if rec.failed_step:
        lines.append(f"failed step: {rec.failed_step}")
    if version is not None:
        lines.append(f"since the previous night: {version}")
    if res is not None and res.evidence:
        lines.append("evidence:")
        lines += [f"  {e}" for e in res.evidence]
    return "\n".join(lines)


# -- JUnit --------------------------------------------------------------------------------


def _x(text: Any) -> str:
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def junit_xml(suite_name: str, cells: Sequence[CellRecord], run_dirs: RunDirs = None,
              comparison: Comparison | None = None) -> str:
    dirs = _run_dirs(cells, run_dirs)
    counts = {"pass": 0, "failure": 0, "error": 0}
    total_time = 0.0
    starts: list[float] = []
    cases: list[ET.Element] = []
    for rec in cells:
        res = _load(dirs[rec.cell])
        if res is not None:
            starts.append(res.started)
        kind = outcome(rec.verdict)
        version = _version_change(comparison, rec)
        counts[kind] += 1
        total_time += rec.seconds
        case = ET.Element("testcase", classname=_x(f"{rec.kernel}/{rec.arch}"),
                          name=_x(f"{rec.machine}/{rec.flow}/{rec.patchset}"), time=f"{rec.seconds:.3f}")
        if kind == "failure":
            message = f"known bug no longer shows: {rec.reason}" if rec.verdict == Verdict.XPASS else rec.reason
            el = ET.SubElement(case, "failure", message=_x(message), type=rec.verdict)
            el.text = _x(_details(rec, res, version))
        elif kind == "error":
            el = ET.SubElement(case, "error", message=_x(rec.reason or rec.verdict), type=_x(rec.verdict))
            el.text = _x(_details(rec, res, version))
        out = [f"cell: {rec.cell}", f"verdict: {rec.verdict} (observed {rec.observed or rec.verdict}, "
               f"expected {rec.expected})"]
        if rec.verdict == Verdict.XFAIL:
            out.append(f"expected failure: the known bug showed as expected ({rec.observed}): {rec.reason}")
        kernel = _kernel_line(rec)
        if kernel:
            out.append(kernel)
        if version is not None:
            out.append(f"since the previous night: {version}")
        if dirs[rec.cell]:
            out.append(f"run directory: {dirs[rec.cell]}")
        out.append(f"report: {rec.report or '(none)'}")
        ET.SubElement(case, "system-out").text = _x("\n".join(out) + "\n")
        cases.append(case)

    attrs = {"tests": str(len(cells)), "failures": str(counts["failure"]), "errors": str(counts["error"]),
             "skipped": "0", "time": f"{total_time:.3f}"}
    root = ET.Element("testsuites", {"name": _x(suite_name), **attrs})
    suite = ET.SubElement(root, "testsuite", {"name": _x(suite_name), **attrs})
    if starts:
        suite.set("timestamp", datetime.fromtimestamp(min(starts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- KCIDB --------------------------------------------------------------------------------


def _t(text: Any) -> str:
    """A KCIDB string: no NUL characters (every free-text field's pattern)."""
    return str(text).replace("\0", "\\0")


def _no_nul(obj: Any) -> Any:
    """NUL nowhere, misc included (the schema's text patterns forbid it, and databases
    behind KCIDB cannot store it in JSON)."""
    if isinstance(obj, str):
        return _t(obj)
    if isinstance(obj, dict):
        return {_t(k): _no_nul(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nul(v) for v in obj]
    return obj


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return _PATH_BAD.sub("_", text) or "unknown"


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    """KCIDB properties cannot be null: drop the unknown ones."""
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


class _Urls:
    """URLs of run-directory files when `base_url` serves `base_dir` (default: each run
    directory's parent); none without a base_url or for a file outside base_dir."""

    def __init__(self, base_url: str | None, base_dir: Path | None) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.base_dir = base_dir

    def url(self, run_dir: Path | None, name: str) -> str | None:
        if self.base_url is None or run_dir is None or not (run_dir / name).is_file():
            return None
        base = self.base_dir if self.base_dir is not None else run_dir.parent
        rel = os.path.relpath((run_dir / name).resolve(), base.resolve())
        if rel == ".." or rel.startswith(".." + os.sep):
            return None
        return f"{self.base_url}/{quote(Path(rel).as_posix())}"

    def run_files(self, run_dir: Path) -> list[tuple[str, str]]:
        """(file name, URL) of the run's logs and reports, the most telling first."""
        out: list[tuple[str, str]] = []
        for pattern in _LOG_GLOBS:
            for path in sorted(run_dir.glob(pattern)):
                url = self.url(run_dir, path.name)
                if url:
                    out.append((path.name, url))
        return out


def _main_log(run_dir: Path, res: RunResult | None) -> str | None:
    """The plain-text log that tells most: the console of the failed step's VM, else the
    first console log, else the build log."""
    if res is not None and res.failed_step:
        for step in res.steps:
            if step.name == res.failed_step:
                if step.vm and (run_dir / f"console-{step.vm}.log").is_file():
                    return f"console-{step.vm}.log"
                if not step.vm and (run_dir / "build.log").is_file():
                    return "build.log"
    consoles = sorted(run_dir.glob("console-*.log"))
    if consoles:
        return consoles[0].name
    return "build.log" if (run_dir / "build.log").is_file() else None


def kcidb_json(cells: Sequence[CellRecord], origin: str = "kjlab", run_dirs: RunDirs = None, *,
               run_name: str | None = None, base_url: str | None = None,
               base_dir: Path | str | None = None, comparison: Comparison | None = None) -> dict[str, Any]:
    """KCIDB I/O data (schema v5) for the cells.

    `run_name` (e.g. the night's name) goes into the test ids, which must be unique per
    test run; without it each run's own run_id does. `base_url`, when given, is where
    `base_dir` (default: each run directory's parent) is served: logs and reports then get
    URLs. `comparison` (the night against the previous one) notes the cells whose kernel
    version changed since."""
    if not ORIGIN_RE.match(origin):
        raise ValueError(f"KCIDB origin {origin!r}: only lowercase letters, digits and '_'")
    dirs = _run_dirs(cells, run_dirs)
    urls = _Urls(base_url, Path(base_dir) if base_dir is not None else None)
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    tests: list[dict[str, Any]] = []

    for rec in cells:
        run_dir = dirs[rec.cell]
        res = _load(run_dir)
        prov = res.provenance if res is not None else {}
        kernel = prov.get("kernel") or {}
        run_key = (run_name or (res.run_id if res is not None else None) or (run_dir.name if run_dir else None)
                   or time.strftime("export-%Y%m%d-%H%M%S"))  # a cell that never got a run directory
        checkout = _kcidb_checkout(rec, kernel, origin)
        checkouts.setdefault(checkout["id"], checkout)
        build = _kcidb_build(rec, kernel, checkout["id"], origin, run_key, urls.url(run_dir, "kernel.config"))
        builds.setdefault(build["id"], build)
        tests.append(_kcidb_test(rec, res, prov, build["id"], origin, run_key, run_dir, urls,
                                 _version_change(comparison, rec)))

    data = {"version": dict(KCIDB_VERSION), "checkouts": list(checkouts.values()),
            "builds": list(builds.values()), "tests": tests}
    clean: dict[str, Any] = _no_nul(data)
    return clean


def _kcidb_checkout(rec: CellRecord, kernel: dict[str, Any], origin: str) -> dict[str, Any]:
    """The kernel source version (or, when the build failed before it was known, the
    matrix's kernel label)."""
    if kernel.get("source_version"):
        source, version = str(kernel.get("source", "")), str(kernel["source_version"])
        checkout_id = f"{origin}:checkout-{_hash(source, version)}"
    else:
        source, version = "", ""
        checkout_id = f"{origin}:checkout-{_hash('kernel', rec.kernel)}"
    return _prune({
        "id": checkout_id, "origin": origin,
        "tree_name": "debian" if source.startswith("debian:") else None,
        "git_commit_name": _t(version[4:]) if version.startswith("git:") else None,
        "comment": _t(f"{source} {version}" if version else f"kernel {rec.kernel} (source unknown)"),
        "valid": True if version else None,
        "misc": _prune({"kernel": rec.kernel, "source": source or None, "source_version": version or None}),
    })


def _kcidb_build(rec: CellRecord, kernel: dict[str, Any], checkout_id: str, origin: str, run_key: str,
                 config_url: str | None) -> dict[str, Any]:
    """The kernel build, content-addressed by its cache key."""
    if kernel.get("cache_key"):
        build_id = f"{origin}:build-{kernel['cache_key']}"
        build_status = "PASS"
    else:
        build_id = f"{origin}:build-unbuilt-{_hash(run_key, rec.cell)}"
        build_status = "MISS" if Verdict.parse(rec.verdict) is Verdict.INTERRUPTED else "ERROR"
    return _prune({
        "id": build_id, "checkout_id": checkout_id, "origin": origin,
        "architecture": _ARCH_BAD.sub("_", str(kernel.get("arch") or rec.arch).lower()),
        "compiler": _t(kernel["compiler"]) if kernel.get("compiler") else None,
        "config_name": _t("+".join(kernel.get("fragments") or [])) or None,
        "config_url": config_url,
        "comment": _t(f"Linux {kernel.get('release') or rec.kernel} {rec.arch}, patch set {rec.patchset}"),
        "status": build_status,
        "misc": _prune({
            "patchset": rec.patchset, "patches": kernel.get("patches"), "fragments": kernel.get("fragments"),
            "release": kernel.get("release"), "cache_key": kernel.get("cache_key"),
            "config_sha256": kernel.get("config_sha256"), "cached": kernel.get("cached"),
        }),
    })


def _kcidb_test(rec: CellRecord, res: RunResult | None, prov: dict[str, Any], build_id: str, origin: str,
                run_key: str, run_dir: Path | None, urls: _Urls, version: VersionChange | None) -> dict[str, Any]:
    """The cell as a KCIDB test: its verdict, its log and output files."""
    misc = _prune({
        "cell": rec.cell, "verdict": rec.verdict, "observed_verdict": rec.observed or rec.verdict,
        "expected_verdict": rec.expected, "reason": rec.reason or None, "failed_step": rec.failed_step or None,
        "machine": rec.machine, "flow": rec.flow, "patchset": rec.patchset,
        "scenario": res.scenario if res is not None else None,
        "run_id": res.run_id if res is not None else None,
        "run_dir": str(run_dir) if run_dir else None, "report": rec.report or None,
        "kernel_a_build": (prov.get("kernel_a") or {}).get("cache_key"),
        "previous_source_version": version.before if version else None,
    })
    if rec.verdict in (Verdict.XFAIL, Verdict.XPASS):
        misc["known_bug"] = _prune({
            "shows": rec.verdict == Verdict.XFAIL, "expected_verdict": rec.expected, "observed_verdict": rec.observed,
            "signature_matched": res.signature_matched if res is not None else None,
        })
    excerpt = _details(rec, res, version) if outcome(rec.verdict) != "pass" else None
    log_url = None
    output_files: list[dict[str, str]] = []
    if run_dir is not None and urls.base_url:
        main = _main_log(run_dir, res)
        for name, url in urls.run_files(run_dir):
            if name == main and log_url is None:
                log_url = url
            else:
                output_files.append({"name": name, "url": url})
    environment = _prune({
        "comment": _t(f"QEMU machine {rec.machine}"),
        "misc": _prune({"machine": rec.machine, **{k: prov.get(k) for k in ("accelerator", "qemu", "host")}}),
    })
    return _prune({
        "id": f"{origin}:{run_key}/{rec.cell}", "build_id": build_id, "origin": origin,
        "path": f"kexec_jump.{_slug(rec.flow)}",
        "environment": environment,
        "comment": _t(f"{rec.cell}: {rec.verdict}" + (f" - {rec.reason}" if rec.reason else "")),
        "status": kcidb_status(rec.verdict),
        "start_time": _iso(res.started) if res is not None else None,
        "duration": rec.seconds,
        "log_url": log_url,
        "log_excerpt": _t(excerpt)[:LOG_EXCERPT_MAX] if excerpt else None,
        "output_files": output_files,
        "misc": misc,
    })


# -- files --------------------------------------------------------------------------------


def ktap_text(suite_name: str, cells: Sequence[CellRecord], run_dirs: RunDirs = None) -> str:
    """The night as KTAP (lab.ktap): each cell a test named by its id, its steps and checks
    from its results.json; a cell without one (never ran, record lost) by its verdict alone."""
    dirs = _run_dirs(cells, run_dirs)
    results = []
    for rec in cells:
        res = _load(dirs.get(rec.cell))
        if res is None:
            res = RunResult(run_id="", scenario=rec.cell, scenario_path="", flow=rec.flow, started=0.0,
                            verdict=Verdict.parse(rec.verdict), reason=rec.reason or "no results.json",
                            expected_verdict=Verdict.parse(rec.expected))
        results.append(replace(res, scenario=rec.cell))
    return ktap_document(results, f"kjlab night {suite_name}")


def _write(path: Path, text: str) -> Path:
    return atomic.write_text(path, text)


def write_exports(out_dir: Path | str, suite_name: str, cells: Sequence[CellRecord], run_dirs: RunDirs = None,
                  comparison: Comparison | None = None, **kcidb_options: Any) -> dict[str, Path]:
    """Write ``results.ktap``, ``junit.xml`` and ``kcidb.json`` into `out_dir`; `comparison` (the night
    against the previous one) goes to both, `kcidb_options` to :func:`kcidb_json` (origin,
    run_name, base_url, base_dir)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "ktap": _write(out / "results.ktap", ktap_text(suite_name, cells, run_dirs)),
        "junit": _write(out / "junit.xml", junit_xml(suite_name, cells, run_dirs, comparison)),
        "kcidb": _write(out / "kcidb.json", json.dumps(
            kcidb_json(cells, run_dirs=run_dirs, comparison=comparison, **kcidb_options), indent=2) + "\n"),
    }
