"""Kernel build times with and without ccache, side by side in one run:

    .venv/bin/python benchmarks/kernel_build.py [--source debian:linux-source-6.1]

Three builds, each done twice - without ccache, and through a ccache store that starts
empty for the cold build and keeps what the builds before put in it:
  cold            the default scenario's kernel (fragment kexec-jump-i386, patch 0001)
  one-line patch  the same plus a patch that changes one line of machine_kexec_32.c
  second config   the cold build's patch with one more fragment (smp)
Each build compiles in a fresh staging directory under the lab's cache, as `kjlab`'s
builds do (a new cache key is a new directory). The source tree comes from the lab's
cache (downloaded on the first use). Nothing here enters the lab's kernel cache.
"""

from __future__ import annotations

import argparse
import os
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.artifacts import ccache  # noqa: E402
from lab.artifacts.kernel import KernelSpec, _build, kernel_series, resolve_fragment, resolve_patch, source_tree  # noqa: E402
from lab.artifacts.patch_mail import read_series  # noqa: E402
from lab.cache import cache_root  # noqa: E402

PATCH_0001 = "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
ONE_LINE = """\
--- a/arch/x86/kernel/machine_kexec_32.c
+++ b/arch/x86/kernel/machine_kexec_32.c
@@ -1,4 +1,5 @@
 // SPDX-License-Identifier: GPL-2.0-only
+static const char kjlab_bench_marker[] __attribute__((used)) = "one-line change";
 /*
  * handle transition of Linux booting another kernel
  * Copyright (C) 2002-2005 Eric Biederman  <ebiederm@xmission.com>
"""


def timed_build(tree: Path, fragments: list[Path], patches: list[Path], with_ccache: bool, work: Path) -> tuple[float, str]:
    out = work / f"out-{time.monotonic_ns()}"
    out.mkdir(parents=True)
    t0 = time.monotonic()
    mails = [m for p in patches for m in read_series(p)]
    _build(tree, "i386", fragments, mails, out, use_ccache=with_ccache)
    seconds = time.monotonic() - t0
    hits = (out / "ccache").read_text().strip() if (out / "ccache").is_file() else "-"
    shutil.rmtree(out)
    return seconds, hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="debian:linux-source-6.1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not ccache.available():
        print("ccache is not installed (Debian package 'ccache'; ./bootstrap.sh installs it)", file=sys.stderr)
        return 1
    tree, version = source_tree(KernelSpec(args.source, "i386", (), ()), None)
    base = [resolve_fragment("kexec-jump-i386")]
    patch = resolve_patch(PATCH_0001, kernel_series(tree))
    (cache_root() / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kjlab-bench-build-", dir=cache_root() / "tmp") as tmp:
        work = Path(tmp)
        one_line = work / "one-line.patch"
        one_line.write_text(ONE_LINE)
        builds = (
            ("cold", base, [patch]),
            ("one-line patch", base, [patch, one_line]),
            ("second config", [*base, resolve_fragment("smp")], [patch]),
        )
        rows = []
        store = work / "ccache"
        os.environ["KJLAB_CCACHE_DIR"] = str(store)  # empty: the cold build fills it
        for name, fragments, patches in builds:
            without, _ = timed_build(tree, fragments, patches, False, work)
            with_cc, hits = timed_build(tree, fragments, patches, True, work)
            rows.append((name, without, with_cc, hits))
            print(f"{name}: {without:.0f} s without ccache, {with_cc:.0f} s with ({hits})", flush=True)
    print(f"\nLinux {version} i386, {os.cpu_count()} cores")
    print(f"{'build':<18}{'no ccache s':>12}{'ccache s':>10}   ccache hits")
    for name, without, with_cc, hits in rows:
        print(f"{name:<18}{without:12.0f}{with_cc:10.0f}   {hits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
