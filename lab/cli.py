"""kjlab's command line: parse, call the library, print, map the outcome to an exit code.

Exit codes fit `git bisect run`: 0 good (PASS), 1 bad (any failure verdict),
125 cannot test (the lab could not build or boot), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import rich.progress
from rich.markup import escape as esc  # text from outside (guests, builds, files) is never markup
from rich.console import Console
from rich.logging import RichHandler

from . import SCENARIOS_DIR, progress
from .arch import Arch
from .errors import KjlabError, UserError
if TYPE_CHECKING:
    from .executors.dask import DaskExecutor
from .machines import MachineSpec, machine_fragments, machines, ram_ranges
from .matrix import Matrix
from .quirks import QUIRKS
from .results import RunResult, Step
from .verdict import EXIT_CANNOT_TEST, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_PASS, EXIT_USAGE, exit_code

# On a terminal: colour and rich's layout. Elsewhere (CI, cron, a pipe): plain lines,
# never wrapped at 80 columns, no colour codes.
TERMINAL = sys.stdout.isatty()
out = Console(highlight=False, soft_wrap=not TERMINAL, no_color=not TERMINAL)


def _log_handler() -> logging.Handler:
    if sys.stderr.isatty():
        return RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    return handler


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[_log_handler()],
    )
    if not args.verbose:  # the long stages (downloads, builds) say what they are doing
        for name in ("lab.artifacts", "lab.buildroot", "lab.debian_archive", "lab.progress"):
            logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)  # connect retries and EOFs: lab.monitor reports
    try:
        with progress.showing(_Bars()) if TERMINAL else contextlib.nullcontext():
            return int(args.func(args))
    except UserError as e:
        out.print(f"[bold red]error:[/] {esc(str(e))}", markup=True)
        return EXIT_USAGE
    except KjlabError as e:
        out.print(f"[bold red]lab error:[/] {esc(str(e))}", markup=True)
        return EXIT_CANNOT_TEST
    except KeyboardInterrupt:
        out.print("[bold yellow]interrupted[/]", markup=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug of the lab: one line here, the traceback in a file
        trace = _save_traceback(e)
        out.print(f"[bold red]internal error:[/] {type(e).__name__}: {esc(str(e))} (traceback in {esc(str(trace))})",
                  markup=True)
        return EXIT_CANNOT_TEST


class _Bars:
    """Progress on a terminal: a rich bar per task, with the estimate of its end."""

    def __init__(self) -> None:
        self.bars: rich.progress.Progress | None = None
        self.tasks: dict[str, rich.progress.TaskID] = {}

    def __call__(self, p: progress.Progress) -> None:
        if self.bars is None:
            self.bars = rich.progress.Progress(
                rich.progress.TextColumn("{task.description}"), rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn(), rich.progress.TextColumn("{task.fields[unit]}"),
                rich.progress.TextColumn("{task.fields[eta]}"), console=out, transient=True)
            self.bars.start()
        if p.task not in self.tasks:
            self.tasks[p.task] = self.bars.add_task(p.task, total=p.total, unit=p.unit, eta="")
        eta = p.eta
        self.bars.update(self.tasks[p.task], completed=p.done, total=p.total,
                         eta=f"ETA {progress.duration(eta)}" if eta is not None else "")
        if p.finished:
            self.bars.remove_task(self.tasks.pop(p.task))
            if not self.tasks:
                self.bars.stop()
                self.bars = None
            out.print(p.line())


def _save_traceback(e: BaseException) -> Path:
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="kjlab-error-", suffix=".log")
    with open(fd, "w") as f:
        f.write("".join(traceback.format_exception(e)))
    return Path(name)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kjlab", description="QEMU test lab for Linux kexec-jump hibernation")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario file end to end and write its report")
    r.add_argument("scenario", type=Path, help="a scenario .toml file, or a directory of them (a suite)")
    r.add_argument("--runs-dir", type=Path, default=None, help="where run directories go (default: reports/runs)")
    r.add_argument("--kernel-tree", type=Path, default=None,
                   help="build the kernel from this local source tree instead of the scenario's source")
    r.add_argument("--keep", choices=("all", "failed"), default=None,
                   help="keep memory snapshots and the disk image of every run (all, the default of one run) or "
                        "only of failed runs (the default of --repeat)")
    r.add_argument("--patch", type=Path, action="append", default=[], metavar="FILE",
                   help="apply this patch, git format-patch series or mbox of a mail thread to the kernel with "
                        "git am's semantics (cover letter and replies left out), after the scenario's own "
                        "patches; repeatable, in order")
    r.add_argument("--ktap", type=Path, default=None, metavar="FILE",
                   help="also write the run (its steps, checks and verdict) as KTAP to FILE, for KernelCI/LKFT-style "
                        "tools; with a directory of scenarios, every run of the suite")
    bisect = r.add_mutually_exclusive_group()
    bisect.add_argument("--bisect", action="store_true",
                        help="exit codes for `git bisect run` looking for the commit that broke the scenario: "
                             "0 PASS, 1 the scenario's failure, 125 anything else")
    bisect.add_argument("--bisect-fix", action="store_true",
                        help="exit codes for `git bisect run` looking for the commit that fixed the scenario's "
                             "failure: 0 while the failure shows (git bisect's old term), 1 once it passes "
                             "(the new term), 125 anything else")
    r.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="run the scenario N times (a flake's rate: the failures and their 95%% upper bound); "
                        "the runs go into one directory with repeat.txt; exit 0 only when every run was good")
    r.add_argument("--parallel", type=int, default=1, metavar="P",
                   help="with --repeat: runs at once (2 on two cores: two guests competing for the host)")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="re-render the HTML report of a saved run directory")
    rep.add_argument("run_dir", type=Path)
    rep.set_defaults(func=cmd_report)

    for name, helptext in (("matrix", "run every cell of a matrix file (no history)"),
                           ("nightly", "run a matrix, record it in the history, compare with the previous night")):
        mp = sub.add_parser(name, help=helptext)
        mp.add_argument("matrix", type=Path, help="a matrix file (scenarios/matrices/*.matrix.toml)")
        mp.add_argument("--parallel", type=int, default=None, help="VMs at once (default: the file's, else the cores)")
        mp.add_argument("--runs-dir", type=Path, default=None, help="where night directories go (default: reports/runs)")
        mp.add_argument("--keep", choices=("all", "failed"), default="failed",
                        help="memory snapshots and disk images: of failed cells only (default; ~1 GiB a cell) or all")
        mp.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="where the cells run: this machine (default) or the workers of a Dask cluster")
        mp.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="with --executor dask: the scheduler, e.g. tcp://host:8786 or tls://host:8786")
        mp.add_argument("--store", default=None, metavar="URL",
                        help="with --executor dask: the artifact store every worker reaches, an fsspec URL "
                             "(file:///shared/kjlab-store, s3://bucket/kjlab; default: file://<cache>/store, "
                             "which only workers on this machine reach)")
        mp.add_argument("--tls-ca-file", default=None, help="with a tls:// scheduler: the CA that signed its certificate")
        mp.add_argument("--tls-cert", default=None, help="with a tls:// scheduler: this client's certificate")
        mp.add_argument("--tls-key", default=None, help="with a tls:// scheduler: this client's private key")
        if name == "matrix":  # a night is the whole matrix: its history compares nights
            mp.add_argument("--cells", action="append", default=None, metavar="GLOB",
                            help="run only the cells whose id matches (repeatable), e.g. '7.2/*/*/*/0001'")
        if name == "nightly":
            mp.add_argument("--history", type=Path, default=None,
                            help="the SQLite history (default: $KJLAB_HISTORY, else ~/.cache/kjlab/history.sqlite)")
            mp.add_argument("--resume", action="store_true",
                            help="carry on the matrix's latest night if it did not complete (its recorded cells "
                                 "are not run again)")
        mp.set_defaults(func=cmd_matrix, record=(name == "nightly"))

    cp = sub.add_parser("compare", help="kexec-jump hibernation against swsusp: two saved runs side by side (comparison.html)")
    cp.add_argument("runs", type=Path, nargs=2, metavar="RUN_DIR", help="a hibernate run and a swsusp run (either order)")
    cp.add_argument("-o", "--output", type=Path, default=None, help="the page (default: comparison.html in the swsusp run)")
    cp.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="list scenarios, flows, machines and quirks")
    ls.set_defaults(func=cmd_list)
    return p


def _print_step(step: Step) -> None:
    if step.outcome == "running":
        out.print(f"  [cyan]▶[/] step {step.seed_step:>4}  {step.name:<22} {esc(step.title)}", markup=True)
    else:
        colour = {"ok": "green", "failed": "red"}.get(step.outcome, "yellow")
        msg = f"  {esc(step.message)}" if step.message else ""
        out.print(f"  [{colour}]{step.outcome:>11}[/] {step.name:<22} {step.seconds:6.1f} s{msg}", markup=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import DEFAULT_RUNS_DIR, run_scenario
    from .scenario import load_scenario, with_kernel_tree, with_patches

    if args.repeat is not None:
        return cmd_repeat(args)
    if args.parallel != 1:
        raise UserError("--parallel goes with --repeat")
    if args.scenario.is_dir():
        return cmd_suite(args)
    sc = load_scenario(args.scenario)
    if args.kernel_tree:
        sc = with_kernel_tree(sc, args.kernel_tree)
    if args.patch:
        sc = with_patches(sc, args.patch)
        _show_patches(sc.patch_files)
    out.print(f"[bold]scenario[/] {sc.name}: {esc(sc.description)}", markup=True)
    outcome = run_scenario(sc, args.runs_dir or DEFAULT_RUNS_DIR, on_step=_print_step, keep=args.keep or "all")
    res = outcome.result
    colour = "green" if res.verdict.good else "red"
    out.print(f"[bold {colour}]verdict: {res.verdict}[/] {esc(res.reason)}", markup=True)
    for line in res.evidence[:20]:
        out.print(f"    {line}")
    out.print(f"results: {outcome.run_dir / 'results.json'}")
    out.print(f"report:  {outcome.report or '(report rendering failed, see log)'}")
    if args.ktap:
        out.print(f"KTAP:    {_write_ktap(args.ktap, [res], f'kjlab run {res.run_id}')}")
    mode = "fix" if args.bisect_fix else "regression" if args.bisect else ""
    return exit_code(res.verdict, res.observed_verdict or res.verdict, res.expected_verdict, bisect=mode)


def _write_ktap(path: Path, results: list[RunResult], title: str) -> Path:
    from . import atomic
    from .ktap import ktap_document

    try:
        return atomic.write_text(path, ktap_document(results, title))
    except OSError as e:
        raise UserError(f"--ktap {path}: {e.strerror or e}") from None


def _show_patches(files: tuple[Path, ...]) -> None:
    """What each --patch file holds, before the build: a file without a patch, or an
    incomplete series, stops here (exit 2)."""
    from .artifacts.patch_mail import read_series

    for file in files:
        for mail in read_series(file):
            out.print(f"[bold]patch[/] {esc(mail.name)}: {esc(mail.subject)} ({esc(mail.author)})", markup=True)


def cmd_repeat(args: argparse.Namespace) -> int:
    from .history import CellRecord
    from .lifetime import sigterm_as_interrupt
    from .repeat import repeat_matrix, run_repeat
    from .runner import DEFAULT_RUNS_DIR

    if args.scenario.is_dir() or args.kernel_tree or args.bisect or args.bisect_fix or args.patch:
        raise UserError("--repeat takes one scenario file, without --kernel-tree, --patch or --bisect")
    matrix = repeat_matrix(args.scenario, args.repeat, args.parallel)  # validates before anything runs
    out.print(f"[bold]repeat[/] {esc(matrix.description)}", markup=True)
    runs = progress.Tracker(f"repeat {matrix.name}", len(matrix.cells), "runs", None)
    failed = 0

    def run_done(rec: CellRecord) -> None:
        nonlocal failed
        stopped = rec.verdict == "INTERRUPTED"  # not a run's outcome: not counted (as in repeat.txt)
        failed += 0 if rec.good or stopped else 1
        colour = "green" if rec.good else "yellow" if stopped else "red"
        reason = rec.reason.splitlines()[0] if rec.reason and not rec.good else ""
        runs.advance()
        out.print(f"  ({runs.done}/{len(matrix.cells)}) [{colour}]{rec.verdict:<13}[/] {rec.patchset}  "
                  f"{rec.seconds:5.1f} s  {failed} failed so far  {esc(reason)}", markup=True)

    with sigterm_as_interrupt():
        summary = run_repeat(args.scenario, args.repeat, args.runs_dir or DEFAULT_RUNS_DIR, parallel=args.parallel,
                             keep=args.keep or "failed", on_done=run_done)
    runs.finish()
    for line in summary.lines():
        out.print(line, markup=False)  # reasons may hold brackets
    out.print(f"summary: {summary.summary_page}")
    out.print(f"repeat:  {Path(summary.night_dir) / 'repeat.txt'}")
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PASS if summary.failures == 0 and summary.runs == args.repeat else EXIT_FAIL


def cmd_suite(args: argparse.Namespace) -> int:
    from .runner import DEFAULT_RUNS_DIR
    from .scenario import Scenario
    from .suite import SuiteEntry, run_suite

    if args.kernel_tree or args.bisect or args.bisect_fix or args.patch:
        raise UserError("--kernel-tree, --patch, --bisect and --bisect-fix take one scenario file, not a directory")

    def started(sc: Scenario, i: int, n: int) -> None:
        out.print(f"[bold]({i}/{n}) {sc.name}[/]: {esc(sc.description)}", markup=True)

    def done(e: SuiteEntry) -> None:
        colour = "green" if e.ok else "red"
        out.print(f"  [{colour}]{e.verdict}[/] (expected {e.expected}, observed {e.observed}) {esc(e.reason)}", markup=True)

    suite_dir, entries = run_suite(args.scenario, args.runs_dir or DEFAULT_RUNS_DIR, on_step=_print_step,
                                   on_scenario=started, on_done=done, keep=args.keep or "all")
    bad = [e for e in entries if not e.ok]
    out.print(f"[bold]{len(entries) - len(bad)}/{len(entries)} scenarios reached their expected verdict[/]", markup=True)
    out.print(f"summary: {suite_dir / 'summary.html'}")
    if args.ktap:
        from .results import load

        # each report sits in its run directory
        results = [load(suite_dir / Path(e.report).parent) for e in entries if e.report]
        out.print(f"KTAP:    {_write_ktap(args.ktap, results, f'kjlab suite {suite_dir.name}')}")
    return EXIT_PASS if not bad else EXIT_FAIL


def cmd_matrix(args: argparse.Namespace) -> int:
    from .history import CellRecord
    from .lifetime import sigterm_as_interrupt
    from .matrix import load_matrix, select_cells
    from .nightly import run_night
    from .runner import DEFAULT_RUNS_DIR

    matrix = load_matrix(args.matrix)
    if getattr(args, "cells", None):
        matrix = select_cells(matrix, args.cells)
    if args.parallel is not None and args.parallel < 1:
        raise UserError(f"--parallel {args.parallel}: must be 1 or more")
    executor = _executor(args)
    if executor is None:
        out.print(f"[bold]matrix[/] {matrix.name}: {len(matrix.cells)} cells, "
                  f"{args.parallel or matrix.parallel} at once", markup=True)
    else:
        out.print(f"[bold]matrix[/] {matrix.name}: {len(matrix.cells)} cells on the Dask cluster at "
                  f"{esc(str(args.scheduler))} (store {esc(str(executor.store))})", markup=True)
    cells = progress.Tracker(f"matrix {matrix.name}", len(matrix.cells), "cells",
                             _expected_seconds(matrix, args.parallel or matrix.parallel,
                                               getattr(args, "history", None)))

    def cell_done(rec: CellRecord) -> None:
        colour = "green" if rec.good else "red"
        reason = rec.reason.splitlines()[0] if rec.reason else ""
        cells.advance()
        eta = cells.snapshot().eta
        out.print(f"  ({cells.done}/{len(matrix.cells)}) [{colour}]{rec.verdict:<13}[/] {rec.cell}  {rec.seconds:5.1f} s"
                  + (f"  {esc(reason)}" if colour == "red" else "")
                  + (f"  (about {progress.duration(eta)} to go)" if eta and cells.done < len(matrix.cells) else ""),
                  markup=True)

    # SIGTERM as Ctrl-C: while the cells run, lab.matrix_run turns both into a clean stop
    # (running cells ended and recorded INTERRUPTED, summary and exports written)
    with sigterm_as_interrupt():
        night = run_night(matrix, args.runs_dir or DEFAULT_RUNS_DIR, record=args.record,
                          history_path=getattr(args, "history", None), parallel=args.parallel, on_done=cell_done,
                          keep=args.keep, executor=executor, resume=getattr(args, "resume", False))
    cells.finish()
    bad = [r for r in night.records.values() if not r.good]
    out.print(f"{len(night.records) - len(bad)}/{len(night.records)} cells good; "
              f"{night.cells_per_hour:.0f} cells/hour over {night.wall_seconds:.0f} s")
    if night.comparison is not None:
        for line in night.comparison.lines():  # kernel version changes first; text, not markup
            out.print(f"  {line}", markup=False)
        if night.comparison.version_changes:
            out.print(f"[bold yellow]{len(night.comparison.version_changes)} kernel(s) of another version "
                      "than the previous night's[/]", markup=True)
        if night.comparison.has_regressions:
            out.print(f"[bold red]{len(night.comparison.regressions)} regressions[/]", markup=True)
    out.print(f"summary: {night.summary}")
    if night.interrupted:
        out.print(f"[bold yellow]interrupted[/]: {len(night.records)} of {len(matrix.cells)} cells recorded",
                  markup=True)
        return EXIT_INTERRUPTED
    if args.record:
        return EXIT_FAIL if night.comparison and night.comparison.has_regressions else EXIT_PASS
    return EXIT_PASS if not bad else EXIT_FAIL


def _executor(args: argparse.Namespace) -> DaskExecutor | None:
    """None for the local executor (run_night's default), else the Dask one."""
    tls = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if args.executor == "local":
        if args.scheduler or args.store or any(tls):
            raise UserError("--scheduler, --store and --tls-* go with --executor dask")
        return None
    if not args.scheduler:
        raise UserError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    if args.parallel is not None:
        raise UserError("--parallel is for --executor local; a Dask worker's VM slots are its --resources vm=N")
    from .cache import cache_root
    from .executors.dask import DaskExecutor, tls_security

    security = None
    if any(tls):
        if not all(tls):
            raise UserError("TLS needs all of --tls-ca-file, --tls-cert and --tls-key")
        security = tls_security(*tls)
    return DaskExecutor(args.scheduler, args.store or f"file://{cache_root() / 'store'}", security=security)


def _expected_seconds(matrix: Matrix, parallel: int, history_path: Path | None) -> float | None:
    """The night's duration as the history knows its cells (a cell never run: the median cell)."""
    from .history import History, default_path

    path = history_path or default_path()
    if not path.is_file():
        return None
    with History(path) as history:
        typical = history.typical_seconds([c.id for c in matrix.cells])
    if not typical:
        return None
    usual = statistics.median(typical.values())
    return sum(typical.get(c.id, usual) for c in matrix.cells) / max(1, parallel)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    if not (args.run_dir / "results.json").is_file():
        raise UserError(f"{args.run_dir}: no results.json (not a run directory)")
    out.print(f"report: {render_report(args.run_dir)}")
    return EXIT_PASS


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import NotComparable, compare_runs

    for run_dir in args.runs:
        if not (run_dir / "results.json").is_file():
            raise UserError(f"{run_dir}: no results.json (not a run directory)")
    try:
        cmp, page = compare_runs(args.runs[0], args.runs[1], args.output)
    except NotComparable as e:
        raise UserError(str(e)) from None
    out.print(f"{'':<20} {'kexec jump':>26} {'swsusp':>26} {'ratio':>8}")
    for row in cmp.rows:
        out.print(f"{row.label:<20} {row.kexec:>26} {row.swsusp:>26} {row.ratio:>8}")
    for warning in cmp.warnings:
        out.print(f"[yellow]warning:[/] {esc(warning)}", markup=True)
    out.print(f"comparison: {page}")
    return EXIT_PASS


def _shown(path: Path) -> str:
    """A path as the user can pass it back: relative to the current directory when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def machine_memory(m: MachineSpec) -> str:
    """"256 MiB", or where QEMU splits it around the PCI hole "6144 MiB (3072 + 3072 above 4 GiB)"."""
    ranges = ram_ranges(m)
    if len(ranges) == 1:
        return f"{m.memory_mib} MiB"
    (_, low), (start, end) = ranges
    return f"{m.memory_mib} MiB ({low >> 20} + {(end - start) >> 20} above 4 GiB)"


def cmd_list(args: argparse.Namespace) -> int:
    from .scenario import load_scenario

    by_arch: dict[str, list[Path]] = {}
    for path in sorted(SCENARIOS_DIR.rglob("*.toml")):
        if not path.name.endswith(".matrix.toml"):
            try:
                arch = str(load_scenario(path).kernel.arch)
            except UserError:  # a scenario that does not load: `kjlab run` says why
                arch = "not loadable"
            by_arch.setdefault(arch, []).append(path)
    for arch, paths in sorted(by_arch.items()):
        out.print(f"[bold]scenarios[/] ({arch})", markup=True)
        for path in paths:  # one path a line, as `kjlab run` takes it
            out.print(f"  {_shown(path)}")
    out.print("[bold]matrices[/]", markup=True)
    for path in sorted(SCENARIOS_DIR.rglob("*.matrix.toml")):
        out.print(f"  {_shown(path)}")
    from .flows import FLOWS

    out.print("[bold]flows[/]", markup=True)
    for name, flow in FLOWS.items():
        out.print(f"  {name:<16} {flow.summary}")
    by_machine_arch: dict[str, list[MachineSpec]] = {}
    for m in machines().values():
        by_machine_arch.setdefault(str(m.arch), []).append(m)
    for arch, specs in sorted(by_machine_arch.items()):
        out.print(f"[bold]machines[/] ({arch})", markup=True)
        for m in specs:
            frags = ", ".join(machine_fragments(m)) or "-"
            pae = f" pae={m.pae}" if m.arch is Arch.I386 else ""  # x86_64: always 64-bit page tables
            flags = f" cpu_flags={','.join(m.cpu_flags)}" if m.cpu_flags else ""  # checked in A at boot
            out.print(f"  {m.name:<20} {m.arch:<7} {m.machine} {m.cpu} {machine_memory(m)} smp={m.smp} "
                      f"acpi={m.acpi}{pae} disk={m.disk_bus}{flags} (fragments: {frags})", markup=False)
    out.print("[bold]quirks[/] (all on by default)", markup=True)
    for q in QUIRKS.values():
        out.print(f"  {q.name:<22} facts item {q.facts_item}: {q.summary}")
    return EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
