"""`git bisect run` with `kjlab run --bisect-fix --kernel-tree` finds the commit that fixed
the i386 triple fault, on a real kernel history made from Debian's 6.1 source:

  1 stock 6.1 (the jump back triple-faults)
  2 an unrelated change (a comment in a Documentation file)
  3 the GDT fix (guests/kernel/patches/6.1/, applied with git am)
  4 another unrelated change

`git bisect start --term-old=broken --term-new=fixed 4 1`, then each step builds the
checked-out tree and runs scenarios/i386-hibernate-unpatched.toml (no patches of its own,
expects PASS): exit 0 while the triple fault shows (old: broken), 1 once it passes (new:
fixed). Commit 3 must come out as the first fixed one; a run that answered always 0 would
name 4, always 1 would name 2. Each step's kernel goes through ccache; the hit rates and
the times are printed (`-s`). Minutes of work: its own mark, `-m bisect`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.artifacts import ccache
from lab.artifacts.kernel import PATCHES_DIR, debian_source

pytestmark = pytest.mark.bisect

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "i386-hibernate-unpatched.toml"
FIX = PATCHES_DIR / "6.1" / "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
DOCS = ("Documentation/power/swsusp.rst", "Documentation/admin-guide/kdump/kdump.rst")


def git(tree: Path, *args: str, timeout: float = 1800) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="kjlab test",
               GIT_AUTHOR_EMAIL="test@kjlab.invalid", GIT_COMMITTER_NAME="kjlab test",
               GIT_COMMITTER_EMAIL="test@kjlab.invalid")
    proc = subprocess.run(["git", "-C", str(tree), "-c", "core.compression=1", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def add_comment(tree: Path, rel: str, text: str) -> None:
    """An unrelated commit's change; the file is written anew (it is a hard link into the
    lab's cached source)."""
    path = tree / rel
    content = path.read_text() + f"\n.. {text}\n"
    path.unlink()
    path.write_text(content)


def make_history(tree: Path) -> list[str]:
    """The four commits over a hard-linked copy of the cached 6.1 source; their ids."""
    source, version = debian_source("linux-source-6.1")
    subprocess.run(["cp", "-al", str(source), str(tree)], check=True, timeout=900)
    git(tree, "init", "-q")
    git(tree, "add", "-f", "-A", "--", ".")  # -f: Debian's .gitignore ignores everything at the top
    git(tree, "commit", "-q", "-m", f"Linux {version} (Debian's linux-source-6.1)")
    add_comment(tree, DOCS[0], "kjlab bisect test: an unrelated change before the fix")
    git(tree, "commit", "-q", "-a", "-m", "Documentation: an unrelated comment")
    git(tree, "am", "-q", str(FIX))  # git am writes the file anew: the cached source keeps its own
    add_comment(tree, DOCS[1], "kjlab bisect test: an unrelated change after the fix")
    git(tree, "commit", "-q", "-a", "-m", "Documentation: another unrelated comment")
    return git(tree, "rev-list", "--reverse", "HEAD").split()


def steps(runs: Path) -> list[dict[str, object]]:
    """Each bisect step's run: verdict, build and run time, ccache hits."""
    rows = []
    for results in sorted(runs.glob("*/results.json")):
        res = json.loads(results.read_text())
        kernel = res["provenance"].get("kernel", {})
        build = next((s["seconds"] for s in res["steps"] if s["name"] == "artifacts"), None)
        rows.append({"commit": str(kernel.get("source_version", "")), "verdict": res["verdict"],
                     "artifacts_s": build, "run_s": res["ended"] - res["started"],
                     "cached": kernel.get("cached"), "ccache": kernel.get("ccache", "")})
    return rows


def test_git_bisect_run_finds_the_fixing_commit(tmp_path: Path) -> None:
    work = tmp_path / "bisect"
    tree, runs = work / "linux", work / "runs"
    work.mkdir()
    try:
        t0 = time.monotonic()
        commits = make_history(tree)
        history_s = time.monotonic() - t0
        assert len(commits) == 4
        stock, _, fix, last = commits
        git(tree, "bisect", "start", "--term-old=broken", "--term-new=fixed", last, stock)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        t1 = time.monotonic()
        proc = subprocess.run(["git", "-C", str(tree), "bisect", "run", sys.executable, "-m", "lab.cli", "run",
                               "--bisect-fix", "--kernel-tree", str(tree), "--runs-dir", str(runs),
                               "--keep", "failed", str(SCENARIO)],
                              env=env, capture_output=True, text=True, timeout=3600)
        bisect_s = time.monotonic() - t1
        rows = steps(runs)
        print(f"\nhistory of 4 commits made in {history_s:.0f} s; git bisect run took {bisect_s:.0f} s, "
              f"{len(rows)} steps:")
        for row in rows:
            print(f"  {row}")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        found = re.search(r"^([0-9a-f]{40}) is the first fixed commit", proc.stdout, re.MULTILINE)
        assert found, proc.stdout[-4000:]
        assert found.group(1) == fix, f"expected the fix {fix}, bisect named {found.group(1)}:\n{proc.stdout}"
        assert {row["verdict"] for row in rows} <= {"PASS", "TRIPLE_FAULT"} and len(rows) >= 2
        source, _ = debian_source("linux-source-6.1")  # the cache's tree behind the hard links is stock
        assert "native_store_gdt" not in (source / "arch/x86/kernel/machine_kexec_32.c").read_text()
        assert all("kjlab bisect test" not in (source / doc).read_text() for doc in DOCS)
        if ccache.available():  # after the first step, a step recompiles what its commit changed
            for row in rows[1:]:
                m = re.search(r"\((\d+\.\d) %\)", str(row["ccache"]))
                assert m and float(m.group(1)) >= 90.0, row
    finally:
        if (tree / ".git").is_dir():
            subprocess.run(["git", "-C", str(tree), "bisect", "reset"], capture_output=True, timeout=300)
        shutil.rmtree(work, ignore_errors=True)
