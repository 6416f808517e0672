"""Content-addressed cache of built artifacts.

Every artifact lives in a directory named by a hash of all of its inputs; a directory
is only visible once complete (built in a temporary sibling, then renamed), so an
interrupted build never leaves a half artifact that a later run would trust.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def cache_root() -> Path:
    root = os.environ.get("KJLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kjlab"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def hash_inputs(inputs: dict) -> str:
    """A stable short hash of a JSON-able description of every input."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path) -> str:
    """Hash of every file's relative path, mode bit x and content below root."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-"))
        h.update(hash_file(path).encode())
    return h.hexdigest()


def cached_dir(kind: str, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return (directory, was_cached) for artifact `kind` under `key`, building it if absent.

    `build` fills a fresh temporary directory; it becomes the cached one only on success.
    """
    final = cache_root() / kind / key
    if (final / ".complete").exists():
        log.info("%s %s: cached at %s", kind, key, final)
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    # One builder per key across processes (matrix cells run in parallel): the others
    # wait for it and then find the artifact complete.
    with open(final.with_name(key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            log.info("%s %s: built meanwhile by another run, at %s", kind, key, final)
            return final, True
        with _staging(final) as tmp:
            build(tmp)
            (tmp / ".complete").write_text(key + "\n")
    return final, False


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
