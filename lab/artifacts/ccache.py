"""Kernel builds through ccache (Debian's package): a rebuild after a patch or a bisect
step recompiles only what changed. The compiler output is the same with or without it,
so the kernel's cache key does not name it.

Paths: every build compiles a hard-linked copy of its source (`<staging>/src`, objects in
`<staging>/obj`) in its own staging directory under the lab's cache, whatever the source
(a Debian package, a tarball, a local tree outside the cache such as a bisect's), so
CCACHE_BASEDIR is the cache root: absolute paths below it become relative (`../src/...`),
the same for every build, and builds of the same code share results wherever the tree
lives; the directory is not hashed (CCACHE_NOHASHDIR; the kernel is built without debug
info). The ccache store is
bounded (MAX_SIZE): a lab machine's disk is not the ccache's. $KJLAB_CCACHE=0 turns it off.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_root

MAX_SIZE = "4G"
HIT_COUNTERS = ("direct_cache_hit", "preprocessed_cache_hit")
MISS_COUNTER = "cache_miss"


def available() -> bool:
    """ccache is installed and not turned off ($KJLAB_CCACHE=0)."""
    return os.environ.get("KJLAB_CCACHE", "1") != "0" and shutil.which("ccache") is not None


def store() -> Path:
    """$KJLAB_CCACHE_DIR (e.g. on a disk of its own), else <cache root>/ccache."""
    return Path(os.environ.get("KJLAB_CCACHE_DIR") or cache_root() / "ccache")


def make_args(stats_log: Path, ccache_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(make variables, environment) for a kernel build through ccache, whose per-build
    results go to `stats_log`."""
    env = dict(os.environ,
               CCACHE_DIR=str(ccache_dir or store()),
               CCACHE_BASEDIR=str(cache_root()),
               CCACHE_NOHASHDIR="1",
               CCACHE_MAXSIZE=MAX_SIZE,
               CCACHE_STATSLOG=str(stats_log))
    return ["CC=ccache gcc"], env


@dataclass(frozen=True)
class Stats:
    hits: int
    misses: int

    @property
    def compilations(self) -> int:
        return self.hits + self.misses

    def summary(self) -> str:
        if not self.compilations:
            return "ccache: no compilations"
        return f"ccache: {self.hits}/{self.compilations} hits ({100 * self.hits / self.compilations:.1f} %)"


def stats(stats_log: Path) -> Stats:
    """Hits and misses of one build, from ccache's stats log (a `# file` line, then the
    counters that compilation raised)."""
    hits = misses = 0
    if stats_log.is_file():
        for line in stats_log.read_text(errors="replace").splitlines():
            if line in HIT_COUNTERS:
                hits += 1
            elif line == MISS_COUNTER:
                misses += 1
    return Stats(hits, misses)
