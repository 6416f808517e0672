"""The history of nightly runs in SQLite: one row per night, one row per cell of a night,
and the comparison of a night with the one before it (regressions, fixes).

A *cell* is one run of a matrix, named by an identifier made of its kernel, arch,
machine, flow and patch set, e.g. ``"6.1/i386/pc-virtio/hibernate/gdt-fix"``; its record
(:class:`CellRecord`) is read from the run's ``results.json``. A *night* is one run of a
whole matrix, named (e.g. ``"2024-05-01"``) and tied to the matrix it ran (its name or
path), so that nights of different matrices never get compared.

Where the database lives: ``$KJLAB_HISTORY`` when set (a file path), else
``<cache root>/history.sqlite``, the cache root being :func:`lab.cache.cache_root`
(``$KJLAB_CACHE``, else ``$XDG_CACHE_HOME/kjlab``, else ``~/.cache/kjlab``). The history
is the embedded SQLite of the standard library: the file is opened in WAL mode (a reader,
e.g. a report page, never blocks the night that writes) and every write is one
transaction.

Every cell is written as it finishes, so a night stopped half way keeps what finished. A
night's ``status`` says how it ended: ``running`` until it ends (and for ever if the
process was killed), then ``completed``, ``interrupted`` (SIGINT/SIGTERM) or ``failed``
(a lab error stopped it). Only completed nights are compared against.

Schema versions: 1 had no ``nights.status``; opening a version-1 file adds the column
(finished nights become ``completed``, the others stay ``running``). 2 had no
``cells.figures`` (a JSON object of a cell's measured figures, e.g. a hibernation cycle's
image size and phase times, lab.compare); it is added, empty for the old cells. 3 had
no ``cells.source_version`` and ``cells.release`` (the Debian source version of the kernel
under test, e.g. ``6.1.192-3``, and its ``uname -r``, e.g. ``6.1.192``, from the run's
``provenance.kernel``); they are added, "" (unknown) for the old cells.

A matrix names its kernels by source (``debian:linux-source-6.1`` is whatever bookworm
holds that night), so the comparison of two nights also says which kernels' versions
changed (:class:`VersionChange`), for the matrix's kernel and for each changed cell.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from .cell import CELL_PARTS, parse_cell_id
from .errors import UserError
from .run_figures import cycle_figures, jump_figures
from .verdict import Verdict

SCHEMA_VERSION = 4


class NightStatus(StrEnum):
    RUNNING = "running"  # not ended (yet, or the process was killed)
    COMPLETED = "completed"  # every cell ran
    INTERRUPTED = "interrupted"  # stopped by SIGINT/SIGTERM; the cells that finished are kept
    FAILED = "failed"  # a lab error stopped the night


_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nights (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    matrix TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    summary_path TEXT,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS cells (
    night_id INTEGER NOT NULL REFERENCES nights(id) ON DELETE CASCADE,
    cell TEXT NOT NULL,
    kernel TEXT NOT NULL,
    arch TEXT NOT NULL,
    machine TEXT NOT NULL,
    flow TEXT NOT NULL,
    patchset TEXT NOT NULL,
    verdict TEXT NOT NULL,
    observed TEXT NOT NULL,
    expected TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_step TEXT NOT NULL,
    seconds REAL NOT NULL,
    run_dir TEXT NOT NULL,
    report TEXT NOT NULL,
    figures TEXT NOT NULL DEFAULT '{}',
    source_version TEXT NOT NULL DEFAULT '',
    release TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (night_id, cell)
);
CREATE INDEX IF NOT EXISTS nights_by_matrix ON nights (matrix, id);
CREATE INDEX IF NOT EXISTS cells_by_cell ON cells (cell, night_id);
CREATE INDEX IF NOT EXISTS cells_by_verdict ON cells (night_id, verdict);
"""


def default_path() -> Path:
    """``$KJLAB_HISTORY``, else ``<cache root>/history.sqlite``."""
    env = os.environ.get("KJLAB_HISTORY")
    if env:
        return Path(env).expanduser()
    from .cache import cache_root

    return cache_root() / "history.sqlite"


def is_good(verdict: str | None) -> bool:
    return verdict is not None and Verdict.parse(verdict).good


@dataclass
class CellRecord:
    """One cell of one night: what the history keeps of its RunResult."""

    cell: str
    kernel: str
    arch: str
    machine: str
    flow: str
    patchset: str
    verdict: str
    observed: str = ""  # the verdict before the expectation was applied (XFAIL/XPASS)
    expected: str = "PASS"
    reason: str = ""
    failed_step: str = ""
    seconds: float = 0.0
    run_dir: str = ""
    report: str = ""  # path of report.html, "" when the run has none
    figures: dict[str, float] = field(default_factory=dict)  # measured: lab.run_figures.cycle_figures
    source_version: str = ""  # the kernel's source version (provenance.kernel), "" unknown
    release: str = ""  # its release (uname -r), "" unknown

    @property
    def good(self) -> bool:
        return is_good(self.verdict)

    @classmethod
    def from_run(cls, cell_id: str, parts: dict[str, str], run_dir: Path) -> CellRecord:
        """The record of the run in `run_dir` (its results.json). `parts` names the cell's
        kernel, arch, machine, flow and patchset; any it lacks come from `cell_id`.

        A run directory without a readable results.json (the run died before its first
        save) is recorded as ERROR, so that a night still has a row for every cell."""
        from .results import load

        try:
            named = parse_cell_id(cell_id)
        except ValueError:
            named = {}
        merged = {p: str(parts.get(p) or named.get(p) or "") for p in CELL_PARTS}
        missing = [p for p in CELL_PARTS if not merged[p]]
        if missing:
            raise ValueError(f"cell {cell_id!r}: no {', '.join(missing)} in its parts or its id")
        run_dir = Path(run_dir)
        report = run_dir / "report.html"
        base: dict[str, Any] = dict(cell=cell_id, **merged, run_dir=str(run_dir), report=str(report) if report.is_file() else "")
        try:
            res = load(run_dir)
        except (OSError, ValueError, TypeError, KeyError) as e:
            return cls(**base, verdict=Verdict.ERROR, observed=Verdict.ERROR,
                       reason=f"no readable results.json in {run_dir}: {type(e).__name__}: {e}")
        ends = [s.ended for s in res.steps if s.ended]
        ended = res.ended or max(ends, default=res.started)

        kernel = res.provenance.get("kernel") or {}  # none when the build failed
        return cls(**base, verdict=res.verdict, observed=res.observed_verdict or res.verdict,
                   expected=res.expected_verdict, reason=res.reason, failed_step=res.failed_step,
                   seconds=round(max(0.0, ended - res.started), 3),
                   figures=cycle_figures(res) | jump_figures(res),
                   source_version=str(kernel.get("source_version") or ""), release=str(kernel.get("release") or ""))


@dataclass
class Night:
    id: int
    name: str
    matrix: str
    started: float
    ended: float | None
    summary_path: str | None
    status: str = NightStatus.RUNNING


@dataclass(frozen=True)
class VersionChange:
    """A kernel whose source version changed from one night to the next: a matrix's kernel
    (``kernel`` its name, e.g. ``"6.1"``) or one cell's. ``before`` and ``after`` are the
    versions, joined by ", " when the night's cells of that kernel ran more than one."""

    kernel: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"kernel {self.kernel}: {self.before} -> {self.after}"


def _version_change(kernel: str, before: set[str], after: set[str]) -> VersionChange | None:
    """The change, or None when the versions are the same or one side is unknown ("")."""
    before, after = before - {""}, after - {""}
    if not before or not after or before == after:
        return None
    return VersionChange(kernel, ", ".join(sorted(before)), ", ".join(sorted(after)))


@dataclass
class Comparison:
    """How a night's cells changed from the previous night's; each list holds cell ids, sorted."""

    previous: dict[str, CellRecord]
    current: dict[str, CellRecord]
    regressions: list[str] = field(default_factory=list)  # was good, now not
    fixes: list[str] = field(default_factory=list)  # was not good, now good
    still_failing: list[str] = field(default_factory=list)
    new_cells: list[str] = field(default_factory=list)  # only in the current night
    gone_cells: list[str] = field(default_factory=list)  # only in the previous night
    unchanged_good: list[str] = field(default_factory=list)
    version_changes: list[VersionChange] = field(default_factory=list)  # per matrix kernel, by name

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressions)

    def change(self, cell: str) -> str:
        """``"PASS -> PANIC"`` for a cell; ``-`` stands for absent."""
        before = self.previous.get(cell)
        after = self.current.get(cell)
        return f"{before.verdict if before else '-'} -> {after.verdict if after else '-'}"

    def version_change(self, cell: str) -> VersionChange | None:
        """The cell's kernel version change from the previous night (None: same, unknown or
        the cell is not in both nights)."""
        before, after = self.previous.get(cell), self.current.get(cell)
        if before is None or after is None:
            return None
        return _version_change(after.kernel, {before.source_version}, {after.source_version})

    def lines(self) -> list[str]:
        """The kernel version changes, then one line per changed or failing cell,
        regressions first, each with its kernel's version change if it had one (for a log
        or a mail)."""
        out = [str(v) for v in self.version_changes]
        for label, cells in (("REGRESSION", self.regressions), ("FIXED", self.fixes),
                             ("STILL FAILING", self.still_failing), ("NEW", self.new_cells),
                             ("GONE", self.gone_cells)):
            for c in cells:
                rec = self.current.get(c)
                why = f": {rec.reason}" if rec and rec.reason and not rec.good else ""
                version = self.version_change(c)
                out.append(f"{label} {c} ({self.change(c)}){f' [{version}]' if version else ''}{why}")
        return out


def compare(previous: dict[str, CellRecord], current: dict[str, CellRecord]) -> Comparison:
    cmp = Comparison(previous=previous, current=current)
    for cell in sorted(set(previous) | set(current)):
        before, after = previous.get(cell), current.get(cell)
        if before is None:
            cmp.new_cells.append(cell)
        elif after is None:
            cmp.gone_cells.append(cell)
        elif before.good and not after.good:
            cmp.regressions.append(cell)
        elif not before.good and after.good:
            cmp.fixes.append(cell)
        elif after.good:
            cmp.unchanged_good.append(cell)
        else:
            cmp.still_failing.append(cell)
    for kernel in sorted({r.kernel for r in previous.values()} & {r.kernel for r in current.values()}):
        change = _version_change(kernel, {r.source_version for r in previous.values() if r.kernel == kernel},
                                 {r.source_version for r in current.values() if r.kernel == kernel})
        if change:
            cmp.version_changes.append(change)
    return cmp


_CELL_COLUMNS = [f.name for f in fields(CellRecord)]


def _cell_record(row: sqlite3.Row) -> CellRecord:
    values = dict(row)
    values["figures"] = json.loads(values.get("figures") or "{}")
    return CellRecord(**values)


class History:
    """The results history in one SQLite file (created with its schema when absent)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are the explicit BEGIN ... COMMIT of _transaction
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._init_schema()

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _init_schema(self) -> None:
        with self._transaction() as db:  # (executescript would COMMIT on its own: one by one)
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(stmt)
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise UserError(f"{self.path}: history schema version {version} is newer than this kjlab's "
                                f"({SCHEMA_VERSION}); use a newer kjlab or another $KJLAB_HISTORY")
            elif version < SCHEMA_VERSION:
                self._migrate(db, version)

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        """Bring an older file up to SCHEMA_VERSION (inside _init_schema's transaction)."""
        if version < 2:
            columns = {r[1] for r in db.execute("PRAGMA table_info(nights)")}
            if "status" not in columns:
                db.execute("ALTER TABLE nights ADD COLUMN status TEXT NOT NULL DEFAULT 'running'")
            db.execute("UPDATE nights SET status = ? WHERE ended IS NOT NULL", (NightStatus.COMPLETED,))
        if version < 3:
            if "figures" not in {r[1] for r in db.execute("PRAGMA table_info(cells)")}:
                db.execute("ALTER TABLE cells ADD COLUMN figures TEXT NOT NULL DEFAULT '{}'")
        if version < 4:
            columns = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
            for column in ("source_version", "release"):  # unknown ("") for the cells of before
                if column not in columns:
                    db.execute(f"ALTER TABLE cells ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # -- writing --------------------------------------------------------------------------

    def start_night(self, name: str, matrix: str, started: float | None = None) -> int:
        with self._transaction() as db:
            cur = db.execute("INSERT INTO nights (name, matrix, started) VALUES (?, ?, ?)",
                             (name, matrix, time.time() if started is None else started))
            return int(cur.lastrowid or 0)

    def record_cell(self, night_id: int, record: CellRecord) -> None:
        """Add a cell to a night; recording the same cell again replaces it (a re-run)."""
        self._night_row(night_id)
        values = [json.dumps(record.figures, sort_keys=True) if c == "figures" else getattr(record, c)
                  for c in _CELL_COLUMNS]
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO cells (night_id, {', '.join(_CELL_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(_CELL_COLUMNS))})",
                [night_id, *values],
            )

    def finish_night(self, night_id: int, summary_path: Path | str | None, ended: float | None = None,
                     status: NightStatus = NightStatus.COMPLETED) -> None:
        self._night_row(night_id)
        status = NightStatus(status)
        with self._transaction() as db:
            db.execute("UPDATE nights SET ended = ?, summary_path = ?, status = ? WHERE id = ?",
                       (time.time() if ended is None else ended,
                        None if summary_path is None else str(summary_path), str(status), night_id))

    def reopen_night(self, night_id: int) -> None:
        """A night resumed (its scheduler or its process restarted): running again."""
        self._night_row(night_id)
        with self._transaction() as db:
            db.execute("UPDATE nights SET ended = NULL, status = ? WHERE id = ?", (str(NightStatus.RUNNING), night_id))

    # -- reading --------------------------------------------------------------------------

    def unfinished_night(self, matrix: str) -> Night | None:
        """The latest night of `matrix` when it did not complete (it is running, was killed,
        stopped or failed): the one a resumed nightly carries on."""
        row = self._db.execute("SELECT * FROM nights WHERE matrix = ? ORDER BY id DESC LIMIT 1", (matrix,)).fetchone()
        if row is None or row["status"] == str(NightStatus.COMPLETED):
            return None
        return Night(**dict(row))

    def _night_row(self, night_id: int) -> sqlite3.Row:
        row: sqlite3.Row | None = self._db.execute("SELECT * FROM nights WHERE id = ?", (night_id,)).fetchone()
        if row is None:
            raise KeyError(f"no night {night_id} in {self.path}")
        return row

    def night(self, night_id: int) -> Night:
        return Night(**dict(self._night_row(night_id)))

    def previous_night(self, matrix: str, before_id: int, finished_only: bool = True) -> int | None:
        """The latest night of `matrix` before night `before_id`; by default only a completed
        one (a night that died or was stopped half way would show its missing cells as gone)."""
        sql = "SELECT id FROM nights WHERE matrix = ? AND id < ?"
        params: list[Any] = [matrix, before_id]
        if finished_only:
            sql += " AND ended IS NOT NULL AND status = ?"
            params.append(str(NightStatus.COMPLETED))
        row = self._db.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        return None if row is None else int(row[0])

    def cells(self, night_id: int) -> dict[str, CellRecord]:
        rows = self._db.execute(
            f"SELECT {', '.join(_CELL_COLUMNS)} FROM cells WHERE night_id = ? ORDER BY cell", (night_id,)
        ).fetchall()
        return {row["cell"]: _cell_record(row) for row in rows}

    def nights(self, matrix: str, last: int = 30) -> list[Night]:
        """The last `last` nights of `matrix`, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM (SELECT * FROM nights WHERE matrix = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (matrix, last),
        ).fetchall()
        return [Night(**dict(r)) for r in rows]

    def trend(self, matrix: str, cell: str, last: int = 7) -> list[tuple[str, str | None]]:
        """(night name, verdict) of `cell` over the last `last` nights of `matrix`, oldest
        first; the verdict is None for a night that had no such cell."""
        return self._over_nights("verdict", matrix, cell, last)

    def figures_trend(self, matrix: str, cell: str, last: int = 7) -> list[tuple[str, dict[str, float]]]:
        """(night name, figures) of `cell` over the last `last` nights of `matrix`, oldest
        first; {} for a night without the cell or without figures."""
        return [(night, json.loads(v) if v else {}) for night, v in self._over_nights("figures", matrix, cell, last)]

    def versions_trend(self, matrix: str, cell: str, last: int = 7) -> list[tuple[str, str | None]]:
        """(night name, kernel source version) of `cell` over the last `last` nights of
        `matrix`, oldest first; None for a night without the cell, "" when it is unknown."""
        return self._over_nights("source_version", matrix, cell, last)

    def _over_nights(self, column: str, matrix: str, cell: str, last: int) -> list[tuple[str, Any]]:
        """(night name, the cell's `column`, None without the cell), the last nights, oldest first."""
        assert column in ("verdict", "figures", "source_version")  # a column name, never outside input
        rows = self._db.execute(
            f"SELECT n.name, c.{column} FROM "
            "(SELECT id, name FROM nights WHERE matrix = ? ORDER BY id DESC LIMIT ?) AS n "
            "LEFT JOIN cells AS c ON c.night_id = n.id AND c.cell = ? ORDER BY n.id",
            (matrix, last, cell),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def typical_seconds(self, cells: list[str], last: int = 5) -> dict[str, float]:
        """The median duration of each cell over its last `last` records (cells never run: absent)."""
        typical: dict[str, float] = {}
        for cell in cells:
            rows = self._db.execute("SELECT seconds FROM cells WHERE cell = ? ORDER BY night_id DESC LIMIT ?",
                                    (cell, last)).fetchall()
            if rows:
                typical[cell] = statistics.median(r[0] for r in rows)
        return typical

    def compare_with_previous(self, night_id: int) -> Comparison:
        """The night against the previous finished night of its matrix (all new when none)."""
        matrix = self._night_row(night_id)["matrix"]
        prev = self.previous_night(matrix, night_id)
        return compare(self.cells(prev) if prev is not None else {}, self.cells(night_id))
