"""Content-addressed cache of built artifacts.

Every artifact lives in a directory named by a hash of all of its inputs; a directory
is only visible once complete (built in a temporary sibling, then renamed), so an
interrupted build never leaves a half artifact that a later run would trust.

Each entry carries a manifest (MANIFEST: every file's path, size and SHA256, every
symlink's target), written and flushed to disk (fsync of the files, the directories and
the parent around the rename) before the entry becomes visible. Before an entry is reused
its manifest is checked - sizes always, contents too unless the entry is large (an
unpacked kernel source: sizes only) - and an entry that does not match, or has no
manifest (built by an older kjlab), is moved aside and rebuilt, never trusted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cache_root() -> Path:
    root = os.environ.get("KJLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kjlab"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def hash_inputs(inputs: dict[str, Any]) -> str:
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


MANIFEST = ".manifest.json"
COMPLETE = ".complete"  # kept for older kjlab versions sharing the cache; the manifest decides here
MANIFEST_VERSION = 1
HASH_VERIFY_LIMIT = 256 << 20  # entries up to this size have their contents checked on every reuse
FSYNC_FILES_LIMIT = 2000  # more files than this (a kernel source tree): one sync() instead


class Damaged(Exception):
    """A cache entry does not match its manifest (internal: the entry is rebuilt)."""


def cached_dir(kind: str, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return (directory, was_cached) for artifact `kind` under `key`, building it if absent.

    `build` fills a fresh temporary directory; it becomes the cached one only on success.
    A present entry that fails its manifest check is set aside (logged) and rebuilt.
    """
    final = cache_root() / kind / key
    if _usable(final, kind, key, warn=False):
        log.info("%s %s: cached at %s", kind, key, final)
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    # One builder per key across processes (matrix cells run in parallel): the others
    # wait for it and then find the artifact complete.
    with open(final.with_name(key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _usable(final, kind, key, warn=True):
            log.info("%s %s: built meanwhile by another run, at %s", kind, key, final)
            return final, True
        _sweep_orphans(final.parent, key)
        _set_aside(final)
        with _staging(final) as tmp:
            build(tmp)
            write_manifest(tmp, key)
    return final, False


def _usable(final: Path, kind: str, key: str, warn: bool) -> bool:
    """The entry exists and matches its manifest; when `warn`, say why one that exists does not."""
    if not final.is_dir():
        return False
    try:
        verify_manifest(final)
        return True
    except Damaged as e:
        if warn:
            log.warning("cache entry %s %s at %s is not trusted, rebuilding it: %s", kind, key, final, e)
        return False


def _sweep_orphans(kind_dir: Path, own_key: str) -> None:
    """Delete what killed builders left in this kind's directory: their staging
    directories (<key>.tmp<pid>, and a kernel build's <key>.tmp<pid>.work of a few hundred
    MB) and entries set aside but not deleted. A SIGKILLed run or a rebooted machine leaves
    them otherwise forever. Each key's lock says whether a builder of it is alive: the
    caller holds `own_key`'s; another key's leftovers go only if its lock is free."""
    for orphan in sorted(kind_dir.glob("*.tmp*")) + sorted(kind_dir.glob("*.damaged-*")):
        key = orphan.name.split(".", 1)[0]
        if key == own_key:
            _remove_orphan(orphan)
            continue
        with open(kind_dir / (key + ".lock"), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being built right now
            _remove_orphan(orphan)


def _remove_orphan(path: Path) -> None:
    log.warning("removing %s, left by a build that did not finish", path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _set_aside(final: Path) -> None:
    """Move a present (damaged or unverifiable) entry out of the way, then delete it."""
    if not os.path.lexists(final):
        return
    aside = final.with_name(f"{final.name}.damaged-{os.getpid()}-{int(time.time())}")
    os.rename(final, aside)
    shutil.rmtree(aside, ignore_errors=True)


# -- manifest -----------------------------------------------------------------------------


def _entries(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file and symlink below root, but the manifest's own."""
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel not in (MANIFEST, COMPLETE):
                yield rel, path


def write_manifest(root: Path, key: str) -> dict[str, Any]:
    """Hash every file below root into root/MANIFEST and flush everything to the disk."""
    files: dict[str, dict[str, Any]] = {}
    paths = list(_entries(root))
    each = len(paths) <= FSYNC_FILES_LIMIT
    for rel, path in paths:
        if path.is_symlink():
            files[rel] = {"link": os.readlink(path)}
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            if each:
                os.fsync(f.fileno())
        files[rel] = {"size": path.stat().st_size, "sha256": h.hexdigest()}
    manifest = {"version": MANIFEST_VERSION, "key": key, "files": files}
    _write_synced(root / MANIFEST, json.dumps(manifest, indent=0, sort_keys=True) + "\n")
    _write_synced(root / COMPLETE, key + "\n")
    if each:
        for dirpath, _dirs, _files in os.walk(root):
            _fsync_dir(Path(dirpath))
    else:
        os.sync()  # thousands of fsyncs would take minutes; one sync flushes them all
    return manifest


def verify_manifest(root: Path, hashes: bool | None = None) -> None:
    """Raise Damaged unless every file of the manifest is below root as the manifest says.
    `hashes`: check contents too; default when the entry is small. A file that is not in
    the manifest is ignored (nothing reads it; a tool that leaves one in a source tree
    must not cause a rebuild on every run)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION or not isinstance(files, dict):
            raise Damaged(f"manifest version {manifest.get('version')!r}, expected {MANIFEST_VERSION}")
    except FileNotFoundError:
        raise Damaged("no manifest (built by an older kjlab, or never completed)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Damaged(f"unreadable manifest: {e}") from None
    present = dict(_entries(root))
    missing = sorted(set(files) - set(present))
    if missing:
        raise Damaged(f"{len(missing)} files missing: {', '.join(missing[:5])}")
    if hashes is None:
        hashes = sum(f.get("size", 0) for f in files.values()) <= HASH_VERIFY_LIMIT
    for rel, want in files.items():
        path = present[rel]
        if "link" in want:
            if not path.is_symlink() or os.readlink(path) != want["link"]:
                raise Damaged(f"{rel}: not the symlink to {want['link']} it was")
            continue
        try:
            size = path.stat().st_size if not path.is_symlink() else -1
        except OSError as e:
            raise Damaged(f"{rel}: {e}") from None
        if size != want["size"]:
            raise Damaged(f"{rel}: {size} bytes, the manifest says {want['size']}")
    if hashes:
        for rel, want in files.items():
            if "sha256" in want and hash_file(present[rel]) != want["sha256"]:
                raise Damaged(f"{rel}: content differs from the manifest (SHA256)")


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(final.parent)  # the rename itself reaches the disk
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
