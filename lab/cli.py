"""kjlab's command line: parse, call the library, print, map the outcome to an exit code.

Exit codes fit `git bisect run`: 0 good (PASS), 1 bad (any failure verdict),
125 cannot test (the lab could not build or boot), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from . import SCENARIOS_DIR
from .errors import KjlabError, UserError
from .machines import MACHINES
from .quirks import QUIRKS
from .results import Step

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_CANNOT_TEST, EXIT_INTERRUPTED = 0, 1, 2, 125, 130
out = Console(highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, markup=False)],
    )
    logging.getLogger("qemu.qmp").setLevel(logging.WARNING)  # its connect/EOF chatter
    try:
        return int(args.func(args))
    except UserError as e:
        out.print(f"[bold red]error:[/] {e}", markup=True)
        return EXIT_USAGE
    except KjlabError as e:
        out.print(f"[bold red]lab error:[/] {e}", markup=True)
        return EXIT_CANNOT_TEST
    except KeyboardInterrupt:
        out.print("[bold yellow]interrupted[/]", markup=True)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kjlab", description="QEMU test lab for Linux kexec-jump hibernation")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario file end to end and write its report")
    r.add_argument("scenario", type=Path, help="a scenario .toml file")
    r.add_argument("--runs-dir", type=Path, default=None, help="where run directories go (default: reports/runs)")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="re-render the HTML report of a saved run directory")
    rep.add_argument("run_dir", type=Path)
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="list scenarios, flows, machines and quirks")
    ls.set_defaults(func=cmd_list)
    return p


def _print_step(step: Step) -> None:
    if step.outcome == "running":
        out.print(f"  [cyan]▶[/] step {step.seed_step:>4}  {step.name:<22} {step.title}", markup=True)
    else:
        colour = {"ok": "green", "failed": "red"}.get(step.outcome, "yellow")
        msg = f"  {step.message}" if step.message else ""
        out.print(f"  [{colour}]{step.outcome:>11}[/] {step.name:<22} {step.seconds:6.1f} s{msg}", markup=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import DEFAULT_RUNS_DIR, run_scenario
    from .scenario import load_scenario

    sc = load_scenario(args.scenario)
    out.print(f"[bold]scenario[/] {sc.name}: {sc.description}", markup=True)
    outcome = run_scenario(sc, args.runs_dir or DEFAULT_RUNS_DIR, on_step=_print_step)
    res = outcome.result
    colour = "green" if res.verdict == "PASS" else "red"
    out.print(f"[bold {colour}]verdict: {res.verdict}[/] {res.reason}", markup=True)
    for line in res.evidence[:20]:
        out.print(f"    {line}")
    out.print(f"results: {outcome.run_dir / 'results.json'}")
    out.print(f"report:  {outcome.report or '(report rendering failed, see log)'}")
    if res.verdict == "PASS":
        return EXIT_PASS
    if res.verdict == "INTERRUPTED":
        return EXIT_INTERRUPTED
    if res.verdict == "ERROR":
        return EXIT_CANNOT_TEST
    return EXIT_FAIL


def cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    if not (args.run_dir / "results.json").is_file():
        raise UserError(f"{args.run_dir}: no results.json (not a run directory)")
    out.print(f"report: {render_report(args.run_dir)}")
    return EXIT_PASS


def cmd_list(args: argparse.Namespace) -> int:
    out.print("[bold]scenarios[/]", markup=True)
    for path in sorted(SCENARIOS_DIR.rglob("*.toml")):
        out.print(f"  {path.relative_to(SCENARIOS_DIR.parent)}")
    out.print("[bold]flows[/]\n  hibernate  the ten steps of seed 004", markup=True)
    out.print("[bold]machines[/]", markup=True)
    for m in MACHINES.values():
        out.print(f"  {m.name:<12} {m.machine} {m.cpu} {m.memory_mib} MiB smp={m.smp} disk={m.disk_bus}")
    out.print("[bold]quirks[/] (all on by default)", markup=True)
    for q in QUIRKS.values():
        out.print(f"  {q.name:<22} facts item {q.facts_item}: {q.summary}")
    return EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
