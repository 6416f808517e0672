"""Kernels from Debian's linux-source packages: fetch, unpack, patch, configure, build.

The artifact (bzImage, .config, build log) is cached under a hash of the source version,
the patches' diffs (not their commit messages or file names: see patch_mail.diff_sha256),
the config fragments, the arch and the compiler version.

Every build compiles a hard-linked copy of its source in its own staging directory
(`<staging>/src`, objects in `<staging>/obj`), whatever the source: a Debian package, a
tarball or a local tree (`kjlab run --kernel-tree`, a bisect step). The patches go onto
that copy with `git am` (lab.artifacts.git_am). So every compiler command line has the same
paths relative to its object directory, and ccache (base directory: the cache root) finds a
bisect step's objects among those of any earlier build of the same code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import GUESTS_DIR
from ..arch import Arch
from ..cache import cache_root, cached_dir, hash_file, hash_inputs
from ..errors import BuildError, CommandFailed, CommandTimeout, UserError
from ..kconfig import verify_config
from ..proc import run
from ..progress import Tracker
from . import ccache
from .git_am import apply_series
from .patch_mail import PatchMail, diff_sha256, read_series
from ..debian_archive import APT_CACHE_TIMEOUT, APT_TIMEOUT, DPKG_TIMEOUT, check_spec, check_suite

log = logging.getLogger(__name__)

BUILDER_VERSION = 1  # bump when the build recipe changes in a way that changes output
CONFIGS_DIR = GUESTS_DIR / "kernel" / "configs"
PATCHES_DIR = GUESTS_DIR / "kernel" / "patches"
# Host command timeouts (seconds): a wedged tool or a hung mirror must not stall a night.
QUICK_TIMEOUT = 60.0  # gcc --version, dpkg-deb -f, git, make kernelrelease
CONFIG_TIMEOUT = 300.0  # make tinyconfig / olddefconfig, merge_config.sh, patch
UNPACK_TIMEOUT = 900.0  # dpkg-deb -x and tar -x of a whole kernel source, cp -al of it
BUILD_TIMEOUT = 3600.0  # make bzImage
GIT_TIMEOUT = 300.0  # git diff of a kernel tree


@dataclass(frozen=True)
class KernelSpec:
    source: str  # "debian:linux-source-6.1" or a local tree path "tree:/path"
    arch: Arch
    fragments: tuple[str, ...]
    patches: tuple[str, ...]


@dataclass(frozen=True)
class Kernel:
    image: Path
    config: Path
    build_log: Path
    release: str
    key: str
    provenance: dict[str, Any]


def resolve_fragment(name: str, series: str = "") -> Path:
    """A config fragment by name; guests/kernel/configs/<series>/<name>.config (e.g. 6.12/)
    overrides the generic one for kernels whose Kconfig differs (as patches have
    backports): the generic form is for the newest kernel, sid's 7.2."""
    file = name if name.endswith(".config") else name + ".config"
    path = CONFIGS_DIR / file
    if not path.is_file():
        choices = sorted(p.stem for p in CONFIGS_DIR.glob("*.config"))
        raise UserError(f"unknown config fragment {name!r}; available: {', '.join(choices)}")
    specific = CONFIGS_DIR / series / file if series else None
    return specific if specific is not None and specific.is_file() else path


def fragment_label(path: Path) -> str:
    """A fragment as records name it: "pae.config", or "6.12/pae.config" for a series' own."""
    return str(path.relative_to(CONFIGS_DIR)) if path.is_relative_to(CONFIGS_DIR) else str(path)


def resolve_patch(name: str, series: str = "", library: Path = PATCHES_DIR, what: str = "kernel") -> Path:
    """A patch by name in `library` (the lab's kernel patches, or another program's, e.g.
    guests/kexec-tools/patches); <library>/<series>/<name> (e.g. 6.12/) overrides the
    generic one (the form sent upstream, against the newest kernel) with a backport for
    kernels whose code differs under the patch's context. An absolute path is any patch
    or mbox file (scenario files and `kjlab run --patch` make their paths absolute)."""
    if os.path.isabs(name):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{what} patch file {name}: no such file")
        return path
    specific = library / series / name if series else None
    path = specific if specific and specific.is_file() else library / name
    if not path.is_file():
        choices = sorted(p.name for p in library.glob("*.patch"))
        raise UserError(f"unknown {what} patch {name!r}; available: {', '.join(choices)} "
                        "(or the path of a patch or mbox file)")
    return path


def patch_label(path: Path, library: Path = PATCHES_DIR) -> str:
    """A patch file as records name it: its name in the library, else its path."""
    return str(path.relative_to(library)) if path.is_relative_to(library) else str(path)


def patch_series(names: tuple[str, ...] | list[str], series: str = "", library: Path = PATCHES_DIR,
                 what: str = "kernel") -> list[PatchMail]:
    """Every patch of every named file (a patch, a format-patch series, an mbox), in order."""
    mails: list[PatchMail] = []
    for name in names:
        path = resolve_patch(name, series, library, what)
        mails.extend(read_series(path, patch_label(path, library)))
    return mails


def hash_patch(path: Path) -> str:
    """The hash of what a patch file changes (patch_mail.diff_sha256 of its bytes)."""
    return diff_sha256(path.read_bytes())


def kernel_series(tree: Path) -> str:
    """"X.Y" from the tree's top Makefile (VERSION, PATCHLEVEL)."""
    head = (tree / "Makefile").read_text(errors="replace")[:2000]
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL)\s*=\s*(\d+)", head, re.MULTILINE))
    return f"{fields.get('VERSION', '')}.{fields.get('PATCHLEVEL', '')}" if fields else ""


def compiler_version() -> str:
    return run(["gcc", "--version"], timeout=QUICK_TIMEOUT).splitlines()[0]


# -- source -------------------------------------------------------------------------------


def debian_source(package: str, log_path: Path | None = None) -> tuple[Path, str]:
    """Unpack Debian's `package` (linux-source-X.Y, or linux-source-X.Y@SUITE for another
    suite than the machine's own) into the cache; return (tree, package version)."""
    name, at, suite = package.partition("@")
    check_spec(name)
    if at:
        check_suite(suite)
    deb = _fetch_suite_deb(name, suite, log_path) if suite else _fetch_host_deb(name, log_path)
    version = run(["dpkg-deb", "-f", str(deb), "Version"], timeout=DPKG_TIMEOUT).strip()

    def unpack(tmp: Path) -> None:
        log.info("unpacking %s", deb.name)
        run(["dpkg-deb", "-x", str(deb), str(tmp / "deb")], log_path=log_path, timeout=UNPACK_TIMEOUT)
        tarballs = list((tmp / "deb" / "usr" / "src").glob("linux-source-*.tar.xz"))
        if len(tarballs) != 1:
            raise BuildError(f"{deb.name}: expected one linux-source tarball, found {tarballs}")
        run(["tar", "-xJf", str(tarballs[0]), "-C", str(tmp)], log_path=log_path, timeout=UNPACK_TIMEOUT)
        shutil.rmtree(tmp / "deb")
        (tree,) = [p for p in tmp.iterdir() if p.is_dir()]
        tree.rename(tmp / "linux")

    src, _ = cached_dir("source", f"{name}_{version}", unpack)
    return src / "linux", version


def _fetch_suite_deb(name: str, suite: str, log_path: Path | None) -> Path:
    """From another suite through private apt lists (lab.debian_archive), arch-all package."""
    from ..debian_archive import fetch_debs

    dest = cache_root() / "debs" / "all"
    return fetch_debs([name], "amd64", dest, suite=suite, log_path=log_path)[name]


def _fetch_host_deb(package: str, log_path: Path | None) -> Path:
    check_spec(package)
    deb_dir = cache_root() / "debs" / "all"
    deb_dir.mkdir(parents=True, exist_ok=True)
    candidate = _candidate_version(package)
    wanted = [d for d in sorted(deb_dir.glob(f"{package}_*_all.deb")) if f"_{_deb_quote(candidate)}_" in d.name]
    if not wanted:
        log.info("downloading %s %s from Debian", package, candidate)
        run(["apt-get", "-o", "APT::Sandbox::User=root", "download", "--", check_spec(f"{package}={candidate}")],
            cwd=deb_dir, log_path=log_path, timeout=APT_TIMEOUT)
        wanted = [d for d in sorted(deb_dir.glob(f"{package}_*_all.deb")) if f"_{_deb_quote(candidate)}_" in d.name]
    if not wanted:
        raise BuildError(f"apt-get download {package}={candidate} left no .deb in {deb_dir}")
    return wanted[-1]


def _deb_quote(version: str) -> str:
    return version.replace(":", "%3a")


def _candidate_version(package: str) -> str:
    try:
        out = subprocess.run(["apt-cache", "policy", "--", package], capture_output=True, text=True,
                             timeout=APT_CACHE_TIMEOUT).stdout
    except subprocess.TimeoutExpired as e:
        raise CommandTimeout(["apt-cache", "policy", "--", package], APT_CACHE_TIMEOUT) from e
    m = re.search(r"Candidate:\s*(\S+)", out)
    if not m or m.group(1) == "(none)":
        raise BuildError(f"Debian has no candidate for {package} (run apt-get update?)")
    return m.group(1)


def source_tree(spec: KernelSpec, log_path: Path | None) -> tuple[Path, str]:
    kind, _, value = spec.source.partition(":")
    if kind == "debian":
        return debian_source(value, log_path)
    if kind == "tarball":
        return tarball_source(Path(value), log_path)
    if kind == "tree":
        tree = Path(value)
        if not (tree / "Makefile").is_file() or not (tree / "arch" / "x86").is_dir():
            raise UserError(f"{tree} is not a Linux source tree (no Makefile or arch/x86)")
        return tree, _tree_version(tree)
    raise UserError(f"kernel source {spec.source!r}: expected 'debian:PACKAGE[@SUITE]', 'tree:PATH' or 'tarball:PATH'")


def tarball_source(tarball: Path, log_path: Path | None = None) -> tuple[Path, str]:
    """A kernel source tarball (e.g. linux-6.6.tar.xz from kernel.org), unpacked into the
    cache under a hash of its content; its version is that hash."""
    if not tarball.is_file():
        raise UserError(f"kernel tarball {tarball}: no such file")
    digest = hash_file(tarball)[:16]

    def unpack(tmp: Path) -> None:
        log.info("unpacking %s", tarball.name)
        run(["tar", "-xf", str(tarball), "-C", str(tmp)], log_path=log_path, timeout=UNPACK_TIMEOUT)
        dirs = [p for p in tmp.iterdir() if p.is_dir()]
        if len(dirs) != 1 or not (dirs[0] / "Makefile").is_file():
            raise BuildError(f"{tarball}: expected one top directory with a kernel Makefile, found {dirs}")
        dirs[0].rename(tmp / "linux")

    src, _ = cached_dir("source", f"tarball-{digest}", unpack)
    return src / "linux", f"tarball:{digest}"


def _tree_version(tree: Path) -> str:
    """For a local tree, a version that changes whenever its content does.

    In a git work tree: HEAD's commit id plus a hash of `git diff HEAD` (staged and
    unstaged edits, binary ones too) and of the names and contents of the untracked files
    git does not ignore; `git describe --dirty` alone would give one key to every edit.
    Outside git: a hash of every file's path, size and modification time (reading a
    whole kernel tree's contents on every run would cost seconds; an edit changes the
    mtime).
    """
    head = _git(tree, "rev-parse", "--verify", "HEAD")
    diff = _git(tree, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--", ".")
    others = _git(tree, "ls-files", "-z", "--others", "--exclude-standard", "--", ".")
    if head is None or diff is None or others is None:  # not a work tree, no commit yet, no git
        return "files:" + _stat_hash(tree)
    h = hashlib.sha256(diff)
    for name in sorted(filter(None, others.split(b"\0"))):
        path = tree / os.fsdecode(name)
        h.update(b"\0untracked\0" + name + b"\0")
        if path.is_symlink():
            h.update(b"link:" + os.fsencode(os.readlink(path)))
        elif path.is_file():
            h.update(hash_file(path).encode())
    return f"git:{head.decode().strip()}+{h.hexdigest()[:16]}"


def _git(tree: Path, *args: str) -> bytes | None:
    """git's output in `tree`, None when it fails (not a work tree, no git, no commit)."""
    try:
        proc = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _stat_hash(tree: Path) -> str:
    h = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, tree)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode:o}\n".encode(errors="surrogateescape"))
    return h.hexdigest()[:16]


# -- build --------------------------------------------------------------------------------


def build_kernel(spec: KernelSpec, log_path: Path | None = None) -> Kernel:
    if not isinstance(spec.arch, Arch):
        raise UserError(f"arch {spec.arch!r} is not supported; options are {', '.join(Arch.names())}")
    for name in spec.fragments:  # an unknown name is refused before any download
        resolve_fragment(name)
    tree, version = source_tree(spec, log_path)
    series = kernel_series(tree)
    fragments = [resolve_fragment(f, series) for f in spec.fragments]
    mails = patch_series(spec.patches, series)
    inputs = {
        "builder": BUILDER_VERSION,
        "source": spec.source,
        "version": version,
        "arch": spec.arch,
        # by file name, as before series' own fragments existed (the same keys for the same
        # files); a series' own fragment has its own content, hence its own key
        "fragments": {f.name: hash_file(f) for f in fragments},
        "patches": [m.diff_sha256 for m in mails],  # what they change, in order; not their names
        "compiler": compiler_version(),
    }
    key = hash_inputs(inputs)
    what = BuildWhat(f"kernel build {version} {spec.arch}",
                     f"{spec.source}@{version} {spec.arch} {','.join(f.name for f in fragments)}")
    out, cached = cached_dir("kernel", key,
                             lambda tmp: _build_keeping_log(tree, spec.arch, fragments, mails, tmp, key, what))
    release = (out / "release").read_text().strip()
    provenance = {
        "source": spec.source,
        "source_version": version,
        "release": release,
        "arch": str(spec.arch),
        "fragments": [fragment_label(f) for f in fragments],
        "patches": [m.name for m in mails],
        "patch_mails": [m.provenance() for m in mails],
        "compiler": inputs["compiler"],
        "config_sha256": hash_file(out / "config"),
        "cache_key": key,
        "cached": cached,
    }
    if (out / "ccache").is_file():
        provenance["ccache"] = (out / "ccache").read_text().strip()
    return Kernel(out / "bzImage", out / "config", out / "build.log", release, key, provenance)


@dataclass(frozen=True)
class BuildWhat:
    title: str  # for progress: "kernel build 6.1.192 i386"
    estimate_key: str  # builds of the same source, arch and fragments compile about as many objects


def _build_keeping_log(tree: Path, arch: Arch, fragments: list[Path], patches: list[PatchMail], out: Path,
                       key: str, what: BuildWhat) -> None:
    """_build, and when it fails the build log survives the staging directory, and the
    error lines (not just the last lines of a parallel make) are in the message."""
    try:
        _build(tree, arch, fragments, patches, out, what)
    except CommandFailed as e:
        kept = cache_root() / "failed-builds" / f"kernel-{key}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        log_text = (out / "build.log").read_text(errors="replace") if (out / "build.log").exists() else ""
        kept.write_text(log_text)
        errors = failure_lines(log_text)
        raise BuildError(f"kernel build {key} failed: {str(e).splitlines()[0]}\n  build log: {kept}\n"
                         + "\n".join("    " + line for line in errors)) from e


def failure_lines(log_text: str, limit: int = 15) -> list[str]:
    """The lines of a build log that say why it failed: compiler and make errors, patch's
    complaints; else what the failing (last) command printed."""
    lines = log_text.splitlines()
    errors = [line for line in lines
              if re.search(r"\berror\b|\*\*\*|FAILED|can't find file to patch|hunks? (ignored|FAILED)|"
                           r"Reversed \(or previously applied\)|Patch failed at|does not apply", line)]
    if errors:
        return errors[:limit]
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
    return lines[starts[-1] + 1:][:limit] if starts else lines[-limit:]


def _build(pristine: Path, arch: Arch, fragments: list[Path], patches: list[PatchMail], out: Path,
           what: BuildWhat | None = None, use_ccache: bool | None = None) -> None:
    work = out.parent / (out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    build_log = out / "build.log"
    try:
        src = _staged_tree(pristine, patches, work, build_log)
        obj = work / "obj"
        obj.mkdir(parents=True)
        make = ["make", "-C", str(src), f"O={obj}", f"ARCH={arch.info.karch}"]
        log.info("configuring kernel: tinyconfig + %s", ", ".join(f.name for f in fragments))
        run([*make, "tinyconfig"], log_path=build_log, timeout=CONFIG_TIMEOUT)
        run([str(src / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(obj), str(obj / ".config"), *map(str, fragments)],
            log_path=build_log, cwd=src, timeout=CONFIG_TIMEOUT)
        run([*make, "olddefconfig"], log_path=build_log, timeout=CONFIG_TIMEOUT)
        verify_config(fragments, obj / ".config")
        jobs = os.cpu_count() or 1
        what = what or BuildWhat(f"kernel build {arch}", "")
        progress = _BuildProgress(Tracker(what.title, _estimates().get(what.estimate_key), "objects"))
        compiler: list[str] = []
        env: dict[str, str] | None = None
        stats_log = work / "ccache-stats.log"
        if use_ccache is None:
            use_ccache = ccache.available()
        if use_ccache:
            compiler, env = ccache.make_args(stats_log)
        log.info("building kernel with %d jobs%s (log: %s)", jobs, " through ccache" if compiler else "", build_log)
        run([*make, *compiler, f"-j{jobs}", "bzImage"], log_path=build_log, env=env, on_line=progress,
            timeout=BUILD_TIMEOUT)
        progress.tracker.finish()
        _save_estimate(what.estimate_key, progress.tracker.done)
        if compiler:
            summary = ccache.stats(stats_log).summary()
            log.info("%s: %s", what.title, summary)
            (out / "ccache").write_text(summary + "\n")
        shutil.copy2(obj / "arch/x86/boot/bzImage", out / "bzImage")
        shutil.copy2(obj / ".config", out / "config")
        shutil.copy2(obj / "System.map", out / "System.map")
        release = run([*make, "-s", "kernelrelease"], timeout=QUICK_TIMEOUT).strip().splitlines()[-1]
        (out / "release").write_text(release + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _staged_tree(pristine: Path, patches: list[PatchMail], work: Path, build_log: Path) -> Path:
    """work/src: a hard-linked copy of the source tree (without its .git), the patches
    applied with git am (the throwaway repository in work/am)."""
    dest = work / "src"
    dest.mkdir(parents=True)
    entries = sorted(str(p) for p in pristine.iterdir() if p.name != ".git")
    run(["cp", "-al", "--", *entries, str(dest)], log_path=build_log, timeout=UNPACK_TIMEOUT)
    if patches:
        apply_series(dest, patches, work / "am", str(pristine), build_log)
    return dest


class _BuildProgress:
    """Counts kbuild's compiled objects for the progress of the build."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def __call__(self, line: str) -> None:
        if line.lstrip().startswith(("CC ", "AS ", "LD ", "AR ")):
            self.tracker.advance()


def _estimates_path() -> Path:
    return cache_root() / "kernel" / "objects.json"


def _estimates() -> dict[str, int]:
    """Objects the last build of each (source, arch, fragments) compiled: the next one's estimate."""
    try:
        data = json.loads(_estimates_path().read_text())
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_estimate(key: str, objects: int) -> None:
    if not key or objects <= 0:
        return
    data = _estimates()
    data[key] = objects
    path = _estimates_path()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: a concurrent build loses at most its own estimate
    except OSError as e:  # an estimate is a nicety: a full disk must not fail the build for it
        log.debug("could not save the build estimate: %s", e)
        tmp.unlink(missing_ok=True)
