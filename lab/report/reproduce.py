"""The report's Reproduce block: the command that reproduces a run, and what the run ran on."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from lab.results import RunResult

from .view import ReproduceView


def _in_checkout(scenario_path: str, root: Any) -> str | None:
    """The scenario's path relative to the kjlab checkout the run used, when it is in it."""
    path = Path(scenario_path)
    if not path.is_absolute():
        return scenario_path
    if isinstance(root, str) and root:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return None
    # runs from before provenance recorded kjlab_root: the lab's scenarios/ directory
    parts = path.parts
    if "scenarios" in parts:
        at = len(parts) - 1 - parts[::-1].index("scenarios")
        return Path(*parts[at:]).as_posix()
    return None


def _mail_fact(mail: dict[str, Any]) -> str:
    """One patch as the kernel lists know it: subject, author, and where to find the mail."""
    text = f"{mail.get('subject') or mail.get('file') or '?'} ({mail.get('author') or 'unknown author'})"
    if mail.get("message_id"):
        text += f" Message-Id: {mail['message_id']}"
    if mail.get("link"):
        text += f" Link: {mail['link']}"
    return text


def reproduce_view(result: RunResult) -> ReproduceView:
    """The command that reproduces the run, the kjlab commit it ran at, and what it ran on."""
    prov = result.provenance
    extra: list[str] = []
    if prov.get("kernel_tree"):
        extra = ["--kernel-tree", str(prov["kernel_tree"])]
    patch_files = [str(f) for f in prov.get("patch_files") or []]
    for file in patch_files:
        extra += ["--patch", file]
    scenario = result.scenario_path or "SCENARIO.toml"
    command = shlex.join(["kjlab", "run", scenario, *extra])

    recorded = str(prov.get("kjlab_commit") or "unknown")
    dirty = recorded.endswith("-dirty")
    commit = recorded.removesuffix("-dirty")
    installed = re.fullmatch(r"kjlab (\S+) \(installed\)", commit)
    notes: list[str] = []
    rel = _in_checkout(scenario, prov.get("kjlab_root"))
    if installed:
        one_liner = " && ".join([f"pip install {shlex.quote('kjlab==' + installed.group(1))}", command])
    else:
        run = shlex.join([".venv/bin/kjlab", "run", rel or scenario, *extra])
        steps = ([] if commit == "unknown" else [f"git checkout {shlex.quote(commit)}"]) + ["./bootstrap.sh", run]
        one_liner = " && ".join(steps)
        if commit == "unknown":
            notes.append("the kjlab commit was not recorded for this run: check out the commit of its time by hand")
    if dirty:
        notes.append(f"the run's checkout had uncommitted changes ({recorded}): the commit alone may not "
                     "reproduce it exactly")
    if Path(scenario).parent.name == "cells":
        notes.append("a matrix cell: the scenario is the cell's file in the night directory, written from the "
                     "matrix; copy it along to reproduce the cell on another machine")
    elif rel is None:
        notes.append("the scenario file is outside the kjlab checkout: copy it along")

    facts: list[tuple[str, str]] = [("kjlab", (commit + (" + uncommitted changes" if dirty else "")))]
    for key, label in (("kernel", "kernel"), ("kernel_a", "kernel A"), ("kernel_bc", "kernels B and C")):
        k = prov.get(key)
        if not isinstance(k, dict):
            continue
        version = " ".join(str(k[f]) for f in ("source", "source_version") if k.get(f))
        if k.get("release"):
            version += f" (release {k['release']})"
        facts.append((label, version or "unknown"))
        facts.append((f"{label} fragments", ", ".join(map(str, k.get("fragments", []))) or "none"))
        facts.append((f"{label} patches", ", ".join(map(str, k.get("patches", []))) or "none"))
        for mail in k.get("patch_mails") or []:
            if isinstance(mail, dict):
                facts.append((f"{label} patch", _mail_fact(mail)))
    kexec_tools = (prov.get("initramfs") or {}).get("kexec_tools")
    if isinstance(kexec_tools, dict):  # built from source with the lab's patches
        facts.append(("kexec-tools", f"{kexec_tools.get('source', 'unknown')} (built from source)"))
        for mail in kexec_tools.get("patches") or []:
            if isinstance(mail, dict):
                facts.append(("kexec-tools patch", _mail_fact(mail)))
    if prov.get("kernel_tree"):
        facts.append(("kernel tree", str(prov["kernel_tree"])))
    if patch_files:
        notes.append("the --patch files are outside the kjlab checkout: copy them along")
    facts.append(("QEMU", str(prov.get("qemu") or "unknown")))
    if prov.get("accelerator"):
        facts.append(("accelerator", str(prov["accelerator"])))
    return ReproduceView(command, one_liner, recorded, facts, notes)
