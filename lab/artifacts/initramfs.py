"""gzip'd newc initramfs images for the guests, from Debian packages plus guests/rootfs.

The base image holds busybox (with a link per applet), kexec, makedumpfile and exactly the
shared objects they load (the DT_NEEDED/PT_INTERP closure, read with pyelftools), plus the
files under guests/rootfs. Images carrying extra files (kernel B and its initramfs inside
kernel A's) are the base with a second gzip'd cpio member appended: the kernel unpacks
concatenated compressed archives, but not an uncompressed one after a compressed one.

The cpio is written here, not with cpio(1): owner 0:0, mtime 0, sorted entries, so the same
inputs give the same bytes, and /dev/console can be a device node without mknod on the host.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from .. import GUESTS_DIR
from ..arch import Arch
from ..cache import cache_root, cached_dir, hash_file, hash_inputs, hash_tree
from ..errors import BuildError, UserError
from ..proc import run
from .. import debian_archive as debian
from .progs import build_progs

log = logging.getLogger(__name__)

RECIPE = 1  # bump when the image layout changes: part of every cache key
IMAGE = "initramfs.gz"
ROOTFS_DIR = GUESTS_DIR / "rootfs"

# package -> programs taken from it (path inside the package = path in the image)
PROGRAMS: dict[str, tuple[str, ...]] = {
    "busybox-static": ("bin/busybox",),
    "kexec-tools": ("sbin/kexec",),
    "makedumpfile": ("usr/bin/makedumpfile",),
}
# Debian ships makedumpfile in /usr/bin; scripts written for other distros look in /usr/sbin
EXTRA_LINKS = {"usr/sbin/makedumpfile": "/usr/bin/makedumpfile"}
DIRS = ("proc", "sys", "dev", "tmp", "mnt", "root", "etc")
PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
GROUP = "root:x:0:\n"
# extra package programs: every file below these directories of the package
PROGRAM_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")

# Depends are followed only into library packages: the rest of a Depends list serves
# maintainer scripts and helper scripts (debconf, perl:any for makedumpfile-R.pl), or ships
# programs and data (libc-bin, *-common) that nothing in a busybox initramfs loads. Only
# library packages can hold a DT_NEEDED soname; the ELF closure below is the real check, so
# a package too many costs a download, one too few fails the build loudly.
NOT_LIBRARY_SUFFIXES = ("-bin", "-common", "-data", "-dev", "-doc", "-l10n", "-utils", "-tools")


def is_library_package(name: str) -> bool:
    return name.startswith(("lib", "zlib")) and not name.endswith(NOT_LIBRARY_SUFFIXES)


@dataclass(frozen=True)
class Initramfs:
    path: Path  # the .gz image
    packages: dict[str, str]  # package name -> exact version, for provenance
    key: str  # cache key


# -- cpio (newc) ------------------------------------------------------------------------


@dataclass(frozen=True)
class CpioEntry:
    name: str  # path in the archive, no leading "/"
    mode: int  # st_mode with the type bits
    source: Path | None = None  # content of a regular file
    data: bytes = b""  # symlink target, or content when there is no source
    rdev: tuple[int, int] = (0, 0)  # device nodes


def _normal_mode(st: os.stat_result, name: str) -> int:
    """Modes that do not depend on the host's umask: 755/644 by the x bit, /tmp 1777."""
    if stat.S_ISDIR(st.st_mode):
        return stat.S_IFDIR | (0o1777 if name == "tmp" else 0o755)
    if stat.S_ISLNK(st.st_mode):
        return stat.S_IFLNK | 0o777
    if stat.S_ISREG(st.st_mode):
        return stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644)
    raise BuildError(f"{name}: only directories, regular files and symlinks can go into the image")


def tree_entries(root: Path) -> list[CpioEntry]:
    """Every directory, file and symlink below root, parents first, in a stable order."""
    entries = []
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        st = path.lstat()
        mode = _normal_mode(st, name)
        if stat.S_ISLNK(mode):
            entries.append(CpioEntry(name, mode, data=os.readlink(path).encode()))
        else:
            entries.append(CpioEntry(name, mode, source=path if stat.S_ISREG(mode) else None))
    return sorted(entries, key=lambda e: e.name.split("/"))


class ByteSink(Protocol):
    """Where write_cpio writes: a binary file, or a GzipFile (which is no typing.BinaryIO)."""

    def write(self, data: bytes, /) -> int: ...


def write_cpio(entries: Iterable[CpioEntry], out: ByteSink) -> None:
    """Write a newc archive (owner 0:0, mtime 0, nlink 1 for files) with its trailer."""
    written = 0

    def put(blob: bytes) -> None:
        nonlocal written
        out.write(blob)
        written += len(blob)

    def pad() -> None:
        put(b"\0" * (-written % 4))

    def header(ino: int, e: CpioEntry, size: int) -> None:
        name = e.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        fields = (ino, e.mode, 0, 0, nlink, 0, size, 0, 0, e.rdev[0], e.rdev[1], len(name), 0)
        put(b"070701" + b"".join(b"%08X" % f for f in fields) + name)
        pad()

    ino = 0
    for ino, e in enumerate(entries, start=1):
        if e.source is not None:
            size = e.source.stat().st_size
            if size >= 1 << 32:
                raise BuildError(f"{e.source}: too large for a newc cpio member (4 GiB)")
            header(ino, e, size)
            with open(e.source, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            written += size
        else:
            header(ino, e, len(e.data))
            put(e.data)
        pad()
    header(ino + 1, CpioEntry("TRAILER!!!", 0), 0)


def append_gzip_cpio(entries: Iterable[CpioEntry], image: Path) -> None:
    """Append one gzip member holding a cpio of entries to image (created if absent)."""
    with open(image, "ab") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        write_cpio(entries, gz)


def list_image(image: Path) -> list[str]:
    """Names in every cpio archive of every gzip member of image (cpio -t stops at the first)."""
    names: list[str] = []
    with gzip.open(image, "rb") as f:
        while True:
            magic = f.read(6)
            while magic[:1] == b"\0":  # zero padding between archives, as the kernel allows
                magic = magic[1:] + f.read(1)
            if len(magic) < 6:
                return names
            if magic != b"070701":
                raise BuildError(f"{image}: bad cpio magic {magic!r} after {names[-1:] or 'start'}")
            fields = [int(f.read(8), 16) for _ in range(13)]
            size, namesize = fields[6], fields[11]
            name = f.read(namesize)[:-1].decode()
            f.read(-(110 + namesize) % 4)
            f.read(size + (-size % 4))
            if name != "TRAILER!!!":
                names.append(name)


# -- ELF closure ------------------------------------------------------------------------


def resolve_in_root(root: Path, rel: str) -> Path | None:
    """The regular file that path `rel` names inside `root`, with symlinks (absolute ones too)
    resolved inside root, never on the host; None when it does not exist."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        if here.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        elif here.exists():
            done.append(part)
        else:
            return None
    path = root.joinpath(*done)
    return path if path.is_file() else None


@dataclass(frozen=True)
class ElfDeps:
    machine: str
    interp: str | None
    needed: tuple[str, ...]


def elf_deps(path: Path) -> ElfDeps:
    with open(path, "rb") as f:
        try:
            elf = ELFFile(f)
            interp: str | None = None
            needed: list[str] = []
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):  # pyelftools makes one for each PT_INTERP, and only for it
                    interp = seg.get_interp_name()
                elif isinstance(seg, DynamicSegment):
                    needed += [t.needed for t in seg.iter_tags("DT_NEEDED")]  # type: ignore[attr-defined]  # pyelftools sets DynamicTag.needed with setattr
            return ElfDeps(elf["e_machine"], interp, tuple(needed))
        except ELFError as exc:
            raise BuildError(f"{path}: not a readable ELF file: {exc}") from exc


def _machine(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            machine: str = ELFFile(f)["e_machine"]
            return machine
    except ELFError:
        return None


def elf_closure(sysroot: Path, programs: Iterable[str], search_dirs: Sequence[str]) -> dict[str, Path]:
    """{image path: real file in sysroot} of the interpreters and shared objects that the
    programs (paths in sysroot) load, recursively. A soname is looked up in search_dirs in
    order, like ld.so without a cache; candidates for another machine are skipped."""
    found: dict[str, Path] = {}
    queue: list[tuple[str, Path]] = []
    for prog in programs:
        real = resolve_in_root(sysroot, prog)
        if real is None:
            raise BuildError(f"{prog}: not found in the extracted packages ({sysroot})")
        queue.append((prog, real))
    while queue:
        chain, real = queue.pop(0)
        deps = elf_deps(real)
        wanted: list[tuple[str, Path]] = []
        if deps.interp:
            interp = resolve_in_root(sysroot, deps.interp)
            if interp is None:
                raise BuildError(f"{chain}: program interpreter {deps.interp} not found in the extracted packages")
            wanted.append((deps.interp.lstrip("/"), interp))
        for soname in deps.needed:
            hit = next(
                ((f"{d}/{soname}", p) for d in search_dirs
                 if (p := resolve_in_root(sysroot, f"{d}/{soname}")) and _machine(p) == deps.machine),
                None,
            )
            if hit is None:
                raise BuildError(f"{chain}: needs {soname}, not found in {', '.join(search_dirs)} "
                                 f"of the extracted packages ({sysroot})")
            wanted.append(hit)
        for image_path, lib in wanted:
            if image_path not in found:
                found[image_path] = lib
                queue.append((f"{chain} -> {image_path}", lib))
    return found


# -- base image -------------------------------------------------------------------------


def search_dirs(arch: Arch) -> tuple[str, ...]:
    t = arch.info.triplet
    return (f"lib/{t}", f"usr/lib/{t}", "lib", "usr/lib")


def package_closure(roots: Sequence[str], arch: str, suite: str, log_path: Path | None = None) -> dict[str, debian.PackageInfo]:
    """The roots plus their library dependencies (recursively), as the apt lists have them."""
    infos: dict[str, debian.PackageInfo] = {}
    skipped: set[str] = set()
    todo = list(roots)
    while todo:
        batch = [n for n in dict.fromkeys(todo) if n not in infos and n not in skipped]
        got = debian.show(batch, arch, suite, log_path)
        for name in batch:
            if name not in got:
                if name in roots:
                    raise BuildError(f"{suite}/{arch}: package {name} not found (virtual or unknown)")
                log.warning("%s: virtual or unknown in %s/%s, not followed", name, suite, arch)
                skipped.add(name)
        infos.update(got)
        todo = [d for i in got.values() for d in i.depends if is_library_package(d)]
    return infos


def _init_present(rootfs: Path) -> None:
    if not (rootfs / "init").is_file() or not os.access(rootfs / "init", os.X_OK):
        raise BuildError(f"{rootfs}/init missing or not executable: every guest image needs one")


def build_base(
    arch: Arch = Arch.I386,
    extra_packages: tuple[str, ...] = (),
    log_path: Path | None = None,
    *,
    suite: str = "bookworm",
    kexec: Path | None = None,
) -> Initramfs:
    """The base image: busybox, kexec, makedumpfile, their libraries (Debian's packages of
    `arch`, e.g. amd64 for x86_64), guests/rootfs and the lab's own static programs of that
    arch from guests/progs (lab.artifacts.progs: bin/kj-jump-back, bin/kj-sentinel,
    bin/kj-proof; boot/kj-physcall.elf on i386).

    `extra_packages` add every program under bin/ sbin/ usr/bin/ usr/sbin/ of those packages
    (with their libraries). Cached under the exact package versions, guests/rootfs and the
    built programs.

    `kexec`: a static kexec built by the lab (lab.artifacts.kexec_tools) for sbin/kexec in
    place of Debian's kexec-tools package, which then is not in the image.
    """
    if not isinstance(arch, Arch):
        raise UserError(f"initramfs arch {arch!r}: expected one of {', '.join(Arch.names())}")
    deb_arch = arch.info.debian
    _init_present(ROOTFS_DIR)
    progs = build_progs(log_path, arch)
    table = dict(PROGRAMS)
    if kexec is not None:
        del table["kexec-tools"]
        progs = {**progs, "sbin/kexec": kexec}
    roots = [*table, *(p for p in extra_packages if p not in table)]
    infos = package_closure(roots, deb_arch, suite, log_path)
    key = hash_inputs({
        "kind": "initramfs-base",
        "recipe": RECIPE,
        "arch": deb_arch,
        "suite": suite,
        "extra": sorted(extra_packages),
        "packages": {n: [i.version, i.sha256] for n, i in sorted(infos.items())},
        "rootfs": hash_tree(ROOTFS_DIR),
        "progs": {name: hash_file(path) for name, path in sorted(progs.items())},
    })

    def build(out: Path) -> None:
        scratch_root = cache_root() / "tmp"
        scratch_root.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="initramfs-", dir=scratch_root) as scratch:
            packages = _build_base(Path(scratch), out / IMAGE, infos, extra_packages, arch, suite, log_path,
                                   progs, table)
        meta = {"key": key, "arch": deb_arch, "suite": suite, "packages": packages,
                "considered": {n: i.version for n, i in sorted(infos.items())}}
        (out / "packages.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    final, cached = cached_dir("initramfs", key, build)
    packages = json.loads((final / "packages.json").read_text())["packages"]
    log.info("initramfs %s (%s): %s", key, "cached" if cached else "built", final / IMAGE)
    return Initramfs(path=final / IMAGE, packages=packages, key=key)


def _build_base(
    scratch: Path,
    image: Path,
    infos: dict[str, debian.PackageInfo],
    extra_packages: tuple[str, ...],
    arch: Arch,
    suite: str,
    log_path: Path | None,
    progs: dict[str, Path] | None = None,
    table: dict[str, tuple[str, ...]] = PROGRAMS,
) -> dict[str, str]:
    """Fetch, extract, stage and pack; return {package: version} of what is in the image.
    `progs` ({path in the image: built file}) are staged last, executable; `table` says which
    programs come from which package."""
    debs = debian.fetch_debs([f"{n}={i.version}" for n, i in sorted(infos.items())], arch.info.debian, scratch / "debs",
                             suite, log_path)
    sysroot, stage = scratch / "sysroot", scratch / "stage"
    owner: dict[str, str] = {}
    for name, deb in sorted(debs.items()):
        debian.extract(deb, sysroot, log_path)
        for path in debian.package_files(deb):
            owner.setdefault(path, name)

    programs = [p for pkg, paths in table.items() for p in paths]
    links = dict(EXTRA_LINKS)
    for pkg in extra_packages:
        for path in debian.package_files(debs[pkg]):
            full = sysroot / path
            if not path.startswith(tuple(d + "/" for d in PROGRAM_DIRS)) or path in programs:
                continue
            if full.is_symlink():
                links[path] = os.readlink(full)
            elif full.is_file() and _is_elf(full):  # scripts would need their interpreters too
                programs.append(path)
    libs = elf_closure(sysroot, programs, search_dirs(arch))

    for d in DIRS:
        (stage / d).mkdir(parents=True, exist_ok=True)
    (stage / "etc/passwd").write_text(PASSWD)
    (stage / "etc/group").write_text(GROUP)
    used: set[str] = set()
    # one copy per file (inode: hard links too); further paths to it become symlinks, e.g.
    # lib/ld-linux.so.2 (PT_INTERP) and lib/i386-linux-gnu/ld-linux.so.2 (NEEDED by libc)
    placed: dict[tuple[int, int], str] = {}
    for path in programs + sorted(libs):
        real = libs.get(path) or resolve_in_root(sysroot, path)
        assert real is not None
        dst = stage / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        st = real.stat()
        if (st.st_dev, st.st_ino) in placed:
            dst.symlink_to("/" + placed[(st.st_dev, st.st_ino)])
        else:
            shutil.copyfile(real, dst)
            dst.chmod(0o755 if os.access(real, os.X_OK) or path in programs else 0o644)
            placed[(st.st_dev, st.st_ino)] = path
        used.add(owner.get(real.relative_to(sysroot).as_posix(), "?"))
    for link, target in sorted(links.items()):
        _symlink(stage, link, target)
    _copy_guest_files(ROOTFS_DIR, stage)
    _stage_progs(progs or {}, stage)
    _busybox_links(sysroot / "bin/busybox", stage)

    entries = tree_entries(stage)
    entries.insert(0, CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.sort(key=lambda e: e.name.split("/"))  # parents first: dev before dev/console
    if "?" in used:
        raise BuildError("a staged file belongs to no package (internal error)")
    append_gzip_cpio(entries, image)
    (image.parent / "manifest.txt").write_text("".join(e.name + "\n" for e in entries))
    return {n: infos[n].version for n in sorted(used)}


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _symlink(stage: Path, link: str, target: str) -> bool:
    """Create stage/link -> target unless something is already there (never clobber)."""
    path = stage / link
    if os.path.lexists(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return True


def _copy_guest_files(src: Path, stage: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        dst = stage / rel
        if path.is_dir() and not path.is_symlink():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        if os.path.lexists(dst):
            log.info("guests/rootfs/%s replaces the packaged file", rel)
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            dst.symlink_to(os.readlink(path))
        else:
            shutil.copyfile(path, dst)
            dst.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def _stage_progs(progs: dict[str, Path], stage: Path) -> None:
    for name, src in sorted(progs.items()):
        dst = stage / name
        if os.path.lexists(dst):
            log.info("%s: the built guest program replaces the file already staged", name)
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        dst.chmod(0o644 if name.startswith("boot/") else 0o755)  # boot/: for kexec, not exec


def _busybox_links(busybox: Path, stage: Path) -> None:
    # the i386 and amd64 busybox run on the x86_64 host (IA32 emulation): ask it for its applets
    try:
        applets = run([str(busybox), "--list-full"], timeout=60).split()
    except OSError as exc:
        raise BuildError(f"cannot run {busybox} on this host to list its applets: {exc}") from exc
    if "bin/sh" not in applets:
        raise BuildError(f"{busybox} --list-full gave no bin/sh: {' '.join(applets[:5])} ...")
    made = sum(_symlink(stage, a, "/bin/busybox") for a in applets)
    log.info("busybox: %d applet links (%d skipped: a file is already there)", made, len(applets) - made)


# -- payload images ---------------------------------------------------------------------


def build_with_payload(base: Initramfs, files: dict[str, Path], log_path: Path | None = None) -> Initramfs:
    """base plus `files` ({path in the image: host file}) as an appended gzip'd cpio member."""
    payload: dict[str, Path] = {}
    for name, src in files.items():
        rel = name.strip("/")
        if not rel or ".." in rel.split("/"):
            raise UserError(f"payload path {name!r}: must be a relative path inside the image")
        if not Path(src).is_file():
            raise UserError(f"payload {name}: {src} is not a file")
        payload[rel] = Path(src)
    key = hash_inputs({
        "kind": "initramfs-payload",
        "recipe": RECIPE,
        "base": base.key,
        "payload": {n: [hash_file(p), os.access(p, os.X_OK)] for n, p in sorted(payload.items())},
    })

    def build(out: Path) -> None:
        shutil.copyfile(base.path, out / IMAGE)
        entries = [CpioEntry(d, stat.S_IFDIR | 0o755) for d in _parents(payload)]
        entries += [CpioEntry(n, stat.S_IFREG | (0o755 if os.access(p, os.X_OK) else 0o644), source=p)
                    for n, p in payload.items()]
        append_gzip_cpio(sorted(entries, key=lambda e: e.name.split("/")), out / IMAGE)
        meta = {"key": key, "base": base.key, "packages": base.packages,
                "payload": {n: str(p) for n, p in sorted(payload.items())}}
        (out / "packages.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    final, cached = cached_dir("initramfs", key, build)
    log.info("initramfs %s = %s + %s (%s)", key, base.key, ", ".join(sorted(payload)),
             "cached" if cached else "built")
    return Initramfs(path=final / IMAGE, packages=dict(base.packages), key=key)


def _parents(paths: Iterable[str]) -> list[str]:
    parents = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    return sorted(parents, key=lambda p: p.split("/"))
