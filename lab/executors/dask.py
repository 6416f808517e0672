"""The Dask executor: a night's builds and cells as tasks of a Dask ``distributed`` cluster.

A worker is a host with QEMU and kjlab installed, started with ``--resources vm=N`` (how
many guests it runs at once). On each worker, as it joins, a plugin probes what the host
can run (lab.executors.capabilities) and adds it to the worker's resources; each cell
asks for one ``vm`` slot and the capabilities it needs, so the scheduler routes it only
to a worker that can run it. A cell no worker can run is recorded ERROR at once, saying
so; a cell whose capable workers all left is recorded ERROR after `no_worker_grace`.

Artifacts: each distinct kernel is built by one worker, under a lock in the store
(lab.artifact_store), and published there; every other worker fetches it into its own
cache before its cells run. The base initramfs likewise.

A cell runs on its worker as it runs locally (lab.matrix_run.run_cells: a subprocess in
its own session, cell_timeout, no leftovers), in a scratch directory; its run directory
and log go to the store with a DONE record last, and come back to this process, which
writes them into the night's directory. A worker killed mid-cell: its cell (and its
QEMUs, through PR_SET_PDEATHSIG) dies with it, Dask runs the task again on another
worker, and the cell is recorded once, when its future completes. A task run again after
its cell finished (the worker died before the scheduler heard of it) finds the DONE
record and returns it without running the cell again; so does a resumed night.

Not covered: a cancelled night (Ctrl-C here) does not stop cells already running on the
workers (Dask cannot interrupt a running task); they finish and leave their DONE records,
which a resumed night picks up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import tomli_w
from distributed import Client, Future, Security, WorkerPlugin, get_worker, wait
from distributed.client import FuturesCancelledError
from distributed.worker import Worker

from ..arch import Arch
from ..artifact_store import ArtifactStore
from ..artifacts.initramfs import build_base
from ..artifacts.kernel import KernelSpec, build_kernel, compiler_version
from ..cache import hash_inputs
from ..errors import InfraError, UserError
from ..matrix import Cell, Matrix
from ..matrix_run import (GRACE_SECONDS, CellArgv, CellOutcome, CellsRun, arches_of, build_failure_reason, kernels_of,
                          kjlab_run_argv, run_cells)
from .capabilities import PREFIX, Capabilities, cell_needs, probe

log = logging.getLogger(__name__)

INLINE_LIMIT = 16 << 20  # run files up to this size come back; bigger ones (snapshots) stay in the store
POLL_SECONDS = 1.0
NO_WORKER_GRACE = 60.0
CONNECT_TIMEOUT = 30.0
PLUGIN_NAME = "kjlab-capabilities"


# -- on the workers -----------------------------------------------------------------------


class CapabilitiesPlugin(WorkerPlugin):
    """Adds the host's capabilities to each worker's resources as it joins; a worker
    started without a `vm` resource gets one slot."""

    async def setup(self, worker: Worker) -> None:
        caps = await asyncio.to_thread(probe)
        resources = caps.resources()
        if "vm" not in worker.state.total_resources:
            log.warning("worker %s has no `vm` resource (start it with --resources vm=N): one VM slot",
                        worker.address)
            resources["vm"] = 1.0
        await worker.set_resources(**resources)
        log.info("worker %s: %s", worker.address, caps.describe())


def _probe() -> Capabilities:
    return probe()


def _worker_name() -> str:
    try:
        return str(get_worker().address)
    except ValueError:
        return "(not a worker)"


@contextmanager
def _scratch(label: str) -> Iterator[Path]:
    """A directory of this task's own on the worker, removed after."""
    try:
        base = Path(get_worker().local_directory) / "kjlab"
    except ValueError:
        base = Path(tempfile.gettempdir()) / "kjlab-scratch"
    path = base / f"{label}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class BuildReturn:
    what: str  # e.g. "kernel debian:linux-source-6.1 (patches: ...)"
    kind: str  # the cache kind: kernel, initramfs
    key: str | None  # its cache key, None when it did not build
    error: str = ""
    user_error: bool = False  # bad input: the night stops
    log: bytes = b""
    worker: str = ""


def build_kernel_task(spec: KernelSpec, store_url: str) -> BuildReturn:
    """Build (or find) one kernel and publish it; one builder per kernel across the cluster."""
    what = f"kernel {spec.source} (patches: {', '.join(spec.patches) or 'none'})"
    store = ArtifactStore(store_url)
    name = "kernel-" + hash_inputs({"spec": repr(spec), "compiler": compiler_version()})

    def build(log_path: Path) -> str:
        known = store.index_get(name)
        if known and store.has("kernel", known):
            store.fetch("kernel", known)  # build_kernel then finds it in this host's cache
        kernel = build_kernel(spec, log_path=log_path)
        store.publish("kernel", kernel.key, kernel.image.parent)
        store.index_set(name, kernel.key)
        return kernel.key

    with store.lock(name):
        return _build_on_worker(what, "kernel", "the cell's kernel did not build", build)


def build_base_task(arch: str, store_url: str) -> BuildReturn:
    store = ArtifactStore(store_url)

    def build(log_path: Path) -> str:
        base = build_base(Arch(arch), log_path=log_path)
        store.publish("initramfs", base.key, base.path.parent)
        return base.key

    with store.lock(f"initramfs-base-{arch}"):
        return _build_on_worker(f"base initramfs {arch}", "initramfs", "the base initramfs did not build", build)


def _build_on_worker(what: str, kind: str, failed: str, build: Callable[[Path], str]) -> BuildReturn:
    """Run `build` (it returns the artifact's cache key) with a build log in a scratch
    directory; its failure becomes a BuildReturn that says why: bad input stops the night,
    an infrastructure failure errors the cells that needed the artifact."""
    with _scratch("build") as scratch:
        log_path = scratch / "build.log"
        try:
            key = build(log_path)
            return BuildReturn(what, kind, key, log=_read(log_path), worker=_worker_name())
        except UserError as e:
            return BuildReturn(what, kind, None, str(e), user_error=True, log=_read(log_path), worker=_worker_name())
        except InfraError as e:
            return BuildReturn(what, kind, None, build_failure_reason(failed, e), log=_read(log_path),
                               worker=_worker_name())


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


@dataclass(frozen=True)
class CellTask:
    cell: Cell
    matrix_name: str
    matrix_path: str
    cell_timeout: float
    night: str  # the night directory's name: the cell's place in the store
    store: str
    keep: str
    fetch: tuple[tuple[str, str], ...]  # (kind, key) of the store's artifacts the cell uses
    cell_argv: CellArgv
    grace: float


@dataclass(frozen=True)
class CellReturn:
    cell: str
    run_id: str | None  # the run directory's name; None when the cell wrote none
    returncode: int | None
    seconds: float
    timed_out: bool
    worker: str
    host: str
    files: dict[str, bytes]  # the run directory's files that came back (relative path -> bytes)
    remote: dict[str, str]  # the bulky ones left in the store (relative path -> URL)
    log: bytes
    reused: bool = False  # found DONE in the store: not run again


def run_cell_task(task: CellTask) -> CellReturn:
    """One cell on this worker; idempotent: a cell with a DONE record is not run again."""
    store = ArtifactStore(task.store)
    slug = task.cell.slug
    done = store.cell_done(task.night, slug)
    if done is not None:
        log.info("cell %s: already done on %s, not run again", task.cell.id, done.get("worker"))
        return cell_return(store, task.night, slug, done, reused=True)
    for kind, key in task.fetch:
        store.fetch(kind, key)
    with _scratch(slug) as scratch:
        scenario = scratch / f"{slug}.toml"
        scenario.write_text(f"# matrix {task.matrix_name}, cell {task.cell.id}\n" + tomli_w.dumps(task.cell.scenario))
        one = Matrix(Path(task.matrix_path), task.matrix_name, "", 1, task.cell_timeout, [task.cell])
        (o,) = run_cells(one, {task.cell.id: scenario}, scratch, 1, keep=task.keep, cell_argv=task.cell_argv,
                         grace=task.grace).outcomes
        inline: list[str] = []
        stored: list[str] = []
        if o.run_dir is not None:
            for path in sorted(p for p in o.run_dir.rglob("*") if p.is_file() and not p.is_symlink()):
                rel = path.relative_to(o.run_dir).as_posix()
                (inline if path.stat().st_size <= INLINE_LIMIT else stored).append(rel)
        done = {"cell": task.cell.id, "run_id": o.run_dir.name if o.run_dir else None, "returncode": o.returncode,
                "seconds": round(o.seconds, 3), "timed_out": o.timed_out, "worker": _worker_name(),
                "host": platform.node(), "inline": inline, "stored": stored, "finished": time.time()}
        store.put_cell(task.night, slug, o.run_dir, o.log_path, done)
    return cell_return(store, task.night, slug, done, reused=False)


def cell_return(store: ArtifactStore, night: str, slug: str, done: dict[str, Any], reused: bool) -> CellReturn:
    """A finished cell read back from its DONE record and files in the store."""
    files = {rel: store.read_cell_file(night, slug, f"run/{rel}") for rel in done.get("inline", [])}
    remote = {rel: store.url_of(night, slug, f"run/{rel}") for rel in done.get("stored", [])}
    try:
        cell_log = store.read_cell_file(night, slug, "cell.log")
    except FileNotFoundError:
        cell_log = b""
    return CellReturn(done["cell"], done.get("run_id"), done.get("returncode"), float(done.get("seconds", 0.0)),
                      bool(done.get("timed_out")), str(done.get("worker", "")), str(done.get("host", "")),
                      files, remote, cell_log, reused)


# -- on this host (the client) ------------------------------------------------------------


class SchedulerLost(InfraError):
    """The connection to the scheduler was lost mid-night: the night fails, resumable."""


def tls_security(ca_file: str, cert: str, key: str) -> Security:
    """TLS to the scheduler: the CA that signed the cluster's certificates, this client's
    certificate and key; plain TCP refused."""
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


@dataclass
class DaskExecutor:
    scheduler: str  # tcp://host:8786, tls://host:8786
    store: str  # fsspec URL every worker (and this host) reaches
    security: Security | None = None
    cell_argv: CellArgv = kjlab_run_argv
    grace: float = GRACE_SECONDS
    build_kernels: bool = True
    build_base: bool = True
    needs: Callable[[Cell], set[str]] = cell_needs
    no_worker_grace: float = NO_WORKER_GRACE
    connect_timeout: float = CONNECT_TIMEOUT
    _slots: int = field(default=0, init=False)

    @property
    def slots(self) -> int:
        return self._slots

    def run(self, matrix: Matrix, files: dict[str, Path], night_dir: Path,
            on_done: Callable[[CellOutcome], None], keep: str) -> CellsRun:
        log.info("connecting to the Dask scheduler at %s", self.scheduler)
        client = Client(self.scheduler, security=self.security, timeout=f"{self.connect_timeout}s")
        try:
            return _Night(self, client, matrix, files, night_dir, on_done, keep).run()
        finally:
            client.close()


@dataclass
class _Night:
    ex: DaskExecutor
    client: Client
    matrix: Matrix
    files: dict[str, Path]
    night_dir: Path
    on_done: Callable[[CellOutcome], None]
    keep: str
    outcomes: list[CellOutcome] = field(default_factory=list)
    recorded: set[str] = field(default_factory=set)

    def run(self) -> CellsRun:
        (self.night_dir / "logs").mkdir(parents=True, exist_ok=True)
        store = ArtifactStore(self.ex.store)
        self.client.register_plugin(CapabilitiesPlugin(), name=PLUGIN_NAME)
        caps: dict[str, Capabilities] = self.client.run(_probe)
        resources = self._resources()
        self.ex._slots = int(sum(r.get("vm", 0) for r in resources.values()))
        for addr, c in sorted(caps.items()):
            log.info("worker %s: %s; %g VM slots", addr, c.describe(), resources.get(addr, {}).get("vm", 0))
        not_run = self._unrunnable(caps)
        pending: dict[Future[CellReturn], Cell] = {}
        try:
            fetch = self._builds(not_run)
            for cell in self.matrix.cells:
                if cell.id in not_run:
                    self._done(CellOutcome(cell, None, None, 0.0, self._log_path(cell), not_run=not_run[cell.id]))
                    continue
                done = store.cell_done(self.night_dir.name, cell.slug)
                if done is not None:  # a resumed night: finished before, not run again
                    log.info("cell %s: done before (on %s), not run again", cell.id, done.get("worker"))
                    self._done(self._materialize(cell, cell_return(store, self.night_dir.name, cell.slug, done, True)))
                    continue
                pending[self._submit(cell, fetch.get(cell.id, ()))] = cell
            self._wait(pending)
        except KeyboardInterrupt:
            running = {k for keys in self.client.processing().values() for k in keys}
            self.client.cancel(list(pending))
            for fut, cell in pending.items():
                if fut.key in running:
                    self._done(CellOutcome(cell, None, None, 0.0, self._log_path(cell), interrupted=True))
            log.warning("interrupted: %d cells cancelled (those running on workers finish there)", len(pending))
            return CellsRun(self.outcomes, interrupted=True, signal="SIGINT")
        return CellsRun(self.outcomes)

    def _resources(self) -> dict[str, dict[str, float]]:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return {addr: dict(w.get("resources") or {}) for addr, w in workers.items()}

    def _unrunnable(self, caps: dict[str, Capabilities]) -> dict[str, str]:
        """{cell id: reason} of the cells no worker can run."""
        have = [c.names() for c in caps.values()]
        described = "; ".join(c.describe() for c in caps.values()) or "no workers"
        reasons = {}
        for cell in self.matrix.cells:
            needs = self.ex.needs(cell)
            if not any(needs <= h for h in have):
                reasons[cell.id] = (f"no worker can run this cell: it needs {', '.join(sorted(needs))}; "
                                    f"the workers have: {described}")
                log.error("cell %s: %s", cell.id, reasons[cell.id])
        return reasons

    def _builds(self, not_run: dict[str, str]) -> dict[str, tuple[tuple[str, str], ...]]:
        """The shared artifacts, built on the workers; the cells whose kernel failed go into
        not_run. Returns each cell's (kind, key) to fetch from the store."""
        runnable = {cid: p for cid, p in self.files.items() if cid not in not_run}
        futures: dict[Future[BuildReturn], list[str]] = {}
        if self.ex.build_kernels:
            for spec, cids in kernels_of(runnable).values():
                fut = self.client.submit(build_kernel_task, spec, self.ex.store, resources={"vm": 1}, pure=False,
                                         key=f"kjlab-build-kernel-{uuid.uuid4().hex[:12]}")
                futures[fut] = cids
        if self.ex.build_base and runnable:
            for arch, arch_cids in arches_of(runnable).items():
                fut = self.client.submit(build_base_task, arch.value, self.ex.store, resources={"vm": 1}, pure=False,
                                         key=f"kjlab-build-base-{uuid.uuid4().hex[:12]}")
                futures[fut] = arch_cids
        fetch: dict[str, list[tuple[str, str]]] = {cid: [] for cid in runnable}
        with open(self.night_dir / "build.log", "ab") as build_log:
            for fut, cids in futures.items():
                try:
                    b: BuildReturn = fut.result()
                except Exception as e:  # the task itself failed (a worker died too often, a bug)
                    b = BuildReturn("a build", "", None, build_failure_reason("the build task failed", e))
                build_log.write(f"\n# {b.what} on {b.worker or '?'}\n".encode() + b.log)
                if b.user_error:
                    raise UserError(b.error)
                if b.key is None:
                    log.error("%s did not build; its %d cells are ERROR:\n%s", b.what, len(cids), b.error)
                    for cid in cids:
                        not_run.setdefault(cid, b.error)
                    continue
                log.info("%s: %s on %s", b.what, b.key, b.worker)
                for cid in cids:
                    fetch[cid].append((b.kind, b.key))
        return {cid: tuple(f) for cid, f in fetch.items()}

    def _submit(self, cell: Cell, fetch: tuple[tuple[str, str], ...]) -> Future[CellReturn]:
        task = CellTask(cell, self.matrix.name, str(self.matrix.path), self.matrix.cell_timeout, self.night_dir.name,
                        self.ex.store, self.keep, fetch, self.ex.cell_argv, self.ex.grace)
        needs = {PREFIX + n: 1.0 for n in self.ex.needs(cell)}
        return self.client.submit(run_cell_task, task, resources={"vm": 1, **needs}, pure=False,
                                  key=f"kjlab-cell-{cell.slug}-{uuid.uuid4().hex[:8]}")

    def _wait(self, pending: dict[Future[CellReturn], Cell]) -> None:
        stranded: dict[str, float] = {}  # cell id -> since when no live worker can run it
        while pending:
            try:
                finished = wait(list(pending), timeout=POLL_SECONDS * 5, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                finished = set()
            except FuturesCancelledError as e:  # none of ours (_strand removes its own): the scheduler went away
                raise self._lost(str(e).splitlines()[-2:]) from e
            for fut in finished:
                cell = pending.pop(fut)
                self._done(self._collect(fut, cell))
            if pending:
                self._strand(pending, stranded)

    def _lost(self, why: list[str]) -> SchedulerLost:
        return SchedulerLost(f"lost the Dask scheduler at {self.ex.scheduler} ({' '.join(why)}): the night stops "
                             "here; carry it on with `kjlab nightly ... --resume` once the scheduler is back "
                             "(finished cells are not run again)")

    def _strand(self, pending: dict[Future[CellReturn], Cell], stranded: dict[str, float]) -> None:
        """A cell whose capable workers have all left is ERROR after no_worker_grace."""
        try:
            live = [set(r) for r in self._resources().values()]
        except OSError as e:
            raise self._lost([str(e)]) from e
        now = time.monotonic()
        for fut, cell in list(pending.items()):
            needs = {"vm", *(PREFIX + n for n in self.ex.needs(cell))}
            if any(needs <= r for r in live):
                stranded.pop(cell.id, None)
                continue
            since = stranded.setdefault(cell.id, now)
            if now - since > self.ex.no_worker_grace:
                fut.cancel()
                del pending[fut]
                reason = (f"no worker that can run this cell is left in the cluster (it needs "
                          f"{', '.join(sorted(self.ex.needs(cell)))} and a vm slot); waited {self.ex.no_worker_grace:.0f} s")
                log.error("cell %s: %s", cell.id, reason)
                self._done(CellOutcome(cell, None, None, 0.0, self._log_path(cell), not_run=reason))

    def _collect(self, fut: Future[CellReturn], cell: Cell) -> CellOutcome:
        if fut.status == "cancelled":  # not by this night (_strand removes its own): the scheduler went away
            raise self._lost([f"cell {cell.id} cancelled"])
        if fut.status != "finished":
            try:
                exc: BaseException | None = fut.exception()
            except Exception as e:  # cancelled
                exc = e
            reason = f"the cell's task failed on the cluster: {type(exc).__name__}: {exc}"
            log.error("cell %s: %s", cell.id, reason)
            return CellOutcome(cell, None, None, 0.0, self._log_path(cell), not_run=reason)
        return self._materialize(cell, fut.result())

    def _materialize(self, cell: Cell, r: CellReturn) -> CellOutcome:
        """The cell's run directory and log, written into the night's directory."""
        log_path = self._log_path(cell)
        log_path.write_bytes(f"# kjlab: cell {cell.id} ran on worker {r.worker} ({r.host})\n".encode() + r.log)
        run_dir = None
        if r.run_id:
            run_dir = self.night_dir / "runs" / cell.slug / PurePosixPath(r.run_id).name
            for rel, data in r.files.items():
                if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
                    log.warning("cell %s: ignoring the file %r from its worker", cell.id, rel)
                    continue
                dest = run_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            if r.remote:
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "REMOTE.json").write_text(json.dumps(r.remote, indent=1, sort_keys=True) + "\n")
        log.info("cell %s: ended on %s%s", cell.id, r.worker, " (done before)" if r.reused else "")
        return CellOutcome(cell, run_dir, r.returncode, r.seconds, log_path, timed_out=r.timed_out)

    def _log_path(self, cell: Cell) -> Path:
        return self.night_dir / "logs" / f"{cell.slug}.log"

    def _done(self, outcome: CellOutcome) -> None:
        if outcome.cell.id in self.recorded:  # never twice, whatever the cluster did
            log.warning("cell %s: a second outcome ignored", outcome.cell.id)
            return
        self.recorded.add(outcome.cell.id)
        self.outcomes.append(outcome)
        self.on_done(outcome)
