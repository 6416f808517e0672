"""The cluster's content-addressed store: artifacts built once for every worker, and the
finished cells of a night (the DONE marker that makes a re-run cell idempotent).

Any fsspec URL: ``file:///shared/kjlab-store`` (an NFS mount, a path on this machine in
tests), ``s3://bucket/kjlab`` and the like for users (with the fsspec backend installed).

    artifacts/<kind>/<key>/...        a cache entry (lab.cache) as built, with its manifest
    artifacts/<kind>/<key>.done       written last: the entry is complete
    index/<name>                      what a build's inputs resolved to (its cache key)
    locks/<name>.lock                 one builder per kernel (file:// only: flock)
    nights/<night>/<cell slug>/       a finished cell: run/<files>, log, DONE.json (last)

An entry is fetched into the worker's own cache (lab.cache.cached_dir: staged, checked
against its manifest, renamed), so a run reads local files only.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

from .cache import Damaged, cached_dir, verify_manifest
from .errors import InfraError

log = logging.getLogger(__name__)

DONE = "DONE.json"


class StoreError(InfraError):
    """The store could not be read or written."""


class ArtifactStore:
    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root: str = str(root).rstrip("/")
        self.local = bool(getattr(fs, "protocol", "") in ("file", "local", ("file", "local")))

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- artifacts ------------------------------------------------------------------------

    def has(self, kind: str, key: str) -> bool:
        return bool(self.fs.exists(self._path("artifacts", kind, f"{key}.done")))

    def publish(self, kind: str, key: str, entry: Path) -> None:
        """Upload a complete cache entry (its manifest included); the .done marker last."""
        if self.has(kind, key):
            return
        final = self._path("artifacts", kind, key)
        staging = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        self._put_tree(entry, staging)
        if self.fs.exists(final):
            self.fs.rm(final, recursive=True)
        self.fs.mv(staging, final, recursive=True)
        self._write(self._path("artifacts", kind, f"{key}.done"), b"%s\n" % key.encode())
        log.info("store: published %s %s to %s", kind, key, self.url)

    def fetch(self, kind: str, key: str) -> Path:
        """The entry in this machine's cache, downloaded from the store when absent."""
        if not self.has(kind, key):
            raise StoreError(f"{kind} {key} is not in the store {self.url}")
        remote = self._path("artifacts", kind, key)

        def download(tmp: Path) -> None:
            log.info("store: fetching %s %s from %s", kind, key, self.url)
            for path in self.fs.find(remote):
                rel = str(path)[len(remote) + 1:]
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(path, str(dest))
            try:
                verify_manifest(tmp, hashes=True)
            except Damaged as e:
                raise StoreError(f"{kind} {key} in the store {self.url} does not match its manifest: {e}") from None

        final, _ = cached_dir(kind, key, download)
        return final

    def _put_tree(self, local: Path, remote: str) -> None:
        for dirpath, _dirs, files in os.walk(local):
            for name in files:
                path = Path(dirpath) / name
                if path.is_symlink():
                    continue
                rel = path.relative_to(local).as_posix()
                self.fs.makedirs(os.path.dirname(f"{remote}/{rel}"), exist_ok=True)
                self.fs.put_file(str(path), f"{remote}/{rel}")

    # -- an index of resolved inputs ------------------------------------------------------

    def index_get(self, name: str) -> str | None:
        path = self._path("index", name)
        return self._read(path).decode().strip() if self.fs.exists(path) else None

    def index_set(self, name: str, value: str) -> None:
        self._write(self._path("index", name), value.encode() + b"\n")

    # -- locks ----------------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """One holder at a time across the cluster: flock on a file of a file:// store (a
        shared mount must support it, as NFSv4 does). Other stores have no lock: two
        workers may then both build, and the second publish is a no-op."""
        if not self.local:
            log.warning("store %s: no cluster lock on this protocol; %s may be built twice", self.url, name)
            yield
            return
        path = Path(self._path("locks", f"{name}.lock"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- finished cells -------------------------------------------------------------------

    def cell_dir(self, night: str, slug: str) -> str:
        return self._path("nights", night, slug)

    def cell_done(self, night: str, slug: str) -> dict[str, Any] | None:
        """The DONE record of a cell of a night, None when the cell has not finished."""
        path = f"{self.cell_dir(night, slug)}/{DONE}"
        if not self.fs.exists(path):
            return None
        data: dict[str, Any] = json.loads(self._read(path))
        return data

    def put_cell(self, night: str, slug: str, run_dir: Path | None, log_path: Path, done: dict[str, Any]) -> None:
        """A finished cell's files, then its DONE record (last: a cell is done once it is there)."""
        base = self.cell_dir(night, slug)
        if run_dir is not None:
            self._put_tree(run_dir, f"{base}/run")
        if log_path.is_file():
            self.fs.makedirs(base, exist_ok=True)
            self.fs.put_file(str(log_path), f"{base}/cell.log")
        self._write(f"{base}/{DONE}", json.dumps(done, indent=1, sort_keys=True).encode())

    def read_cell_file(self, night: str, slug: str, rel: str) -> bytes:
        return self._read(f"{self.cell_dir(night, slug)}/{rel}")

    def url_of(self, night: str, slug: str, rel: str) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.cell_dir(night, slug)}/{rel}"

    # -- bytes ----------------------------------------------------------------------------

    def _read(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as f:
            data: bytes = f.read()
            return data

    def _write(self, path: str, data: bytes) -> None:
        """Whole or not at all: written beside, then moved into place."""
        self.fs.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, path)
