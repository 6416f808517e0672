"""The offline layer: Buildroot's sources from Debian source packages.

For each package a configuration downloads, the Debian source package that carries the
same upstream project (`DEBIAN_SOURCE`) is looked up in the private deb-src lists of
`SUITES` (lab.debian_archive, apt with its own configuration). Its upstream tarball comes
through `apt-get source --tar-only`, which checks it against the Sources index that the
suite's signed Release file covers. Before any of that, a file vendored in the project
(buildroot-offline/dl/<dl_dir>/<Buildroot's file name>, lab.buildroot.vendored) is taken
when there is one: it is Buildroot's own file, checked against Buildroot's hash (a file
that does not match stops the build), so no Debian tarball could be better, and the image
does not depend on what the mirror serves that day. Otherwise, in this order:

1. the tarball is Buildroot's own, byte for byte (one of the package's .hash lines
   matches): it goes into BR2_DL_DIR under Buildroot's file name, and Buildroot checks it
   again as it would a download;
2. otherwise (another version, another compression, a dfsg repack) it is unpacked and used
   as `<PKG>_OVERRIDE_SRCDIR`: Buildroot's own patches of the package are applied when they
   apply (each checked with --dry-run first; the record says which did not), then this
   layer's patches from buildroot-offline/patches/<package>/<upstream version>/, and
   autoreconf when the tarball has no configure script (a git export).

A package whose source no suite can give (and that is not vendored) stops the build with a
BuildError naming it and each version tried. Nothing here is needed with network access: the recipe
(buildroot-config/) builds from upstream downloads as it stands.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import BUILDROOT_OFFLINE_DIR
from .. import debian_archive as debian
from ..cache import cached_dir, hash_file, hash_inputs
from ..errors import BuildError, CommandFailed
from ..proc import run
from . import vendored
from .tree import Package, Tree, matches_hashes

log = logging.getLogger(__name__)

SUITES = ("sid", "trixie", "bookworm")  # newest first: Buildroot's versions are recent
OFFLINE_PATCHES = BUILDROOT_OFFLINE_DIR / "patches"
PATCH_TIMEOUT = 120.0
AUTORECONF_TIMEOUT = 900.0
UNPACK_TIMEOUT = 600.0

# Buildroot package (without host-) -> Debian source package of the same upstream project
DEBIAN_SOURCE = {
    "acl": "acl", "attr": "attr", "autoconf": "autoconf", "automake": "automake-1.16",
    "busybox": "busybox", "bzip2": "bzip2", "elfutils": "elfutils", "fakeroot": "fakeroot",
    "kexec": "kexec-tools", "libtool": "libtool", "libzlib": "zlib", "lzo": "lzo2", "m4": "m4",
    "makedumpfile": "makedumpfile", "patchelf": "patchelf", "pkgconf": "pkgconf", "tar": "tar",
    "xz": "xz-utils", "zlib": "zlib", "zstd": "libzstd",
}


@dataclass
class Provided:
    """What the layer gives Buildroot: files for BR2_DL_DIR, override lines, the record."""

    dl_files: dict[str, Path] = field(default_factory=dict)  # "busybox/busybox-1.38.0.tar.bz2" -> file
    overrides: dict[str, Path] = field(default_factory=dict)  # "HOST_TAR_OVERRIDE_SRCDIR" -> tree
    record: dict[str, dict[str, Any]] = field(default_factory=dict)  # package -> provenance

    def key_inputs(self) -> dict[str, Any]:
        """What the initramfs' cache key takes from the sources: their hashes and trees."""
        return {"dl": {n: hash_file(p) for n, p in sorted(self.dl_files.items())},
                "override": {v: p.name for v, p in sorted(self.overrides.items())}}


def provide(tree: Tree, packages: list[Package], log_path: Path | None = None,
            vendored_dir: Path | None = None) -> Provided:
    """Every package's source: vendored (`vendored_dir`, default buildroot-offline/dl), else
    from Debian."""
    out = Provided()
    for pkg in packages:
        _provide_one(tree, pkg, out, log_path, vendored_dir)
    return out


def _candidates(name: str, version: str, log_path: Path | None) -> list[debian.SourcePackage]:
    """Debian's versions of `name`, nearest to Buildroot's `version` first (the same one, then
    the closest: 2.4.7 before 2.6.2 for 2.4.6), newer suites first among equals."""
    found: list[debian.SourcePackage] = []
    seen: set[str] = set()
    for suite in SUITES:
        for src in reversed(debian.source_versions(name, suite, log_path)):
            if src.version not in seen:
                seen.add(src.version)
                found.append(src)
    return sorted(found, key=lambda s: version_distance(s.upstream_version, version))  # stable: suites order


def version_distance(have: str, want: str) -> tuple[int, ...]:
    """How far upstream version `have` is from `want`: 0 when equal, then the differences of
    their numbers, most significant first ("1.3.dfsg+really1.3.2" counts as 1.3.2)."""
    if have == want:
        return (0,)
    have = have.rsplit("really", 1)[-1]
    a, b = _numbers(have), _numbers(want)
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (1, *(abs(x - y) for x, y in zip(a, b)))


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0]))


def _provide_one(tree: Tree, pkg: Package, out: Provided, log_path: Path | None,
                 vendored_dir: Path | None = None) -> None:
    if len(pkg.sources) != 1:
        raise BuildError(f"Buildroot package {pkg.name} downloads {len(pkg.sources)} files "
                         f"({', '.join(pkg.sources)}); the offline layer handles one")
    wanted = pkg.sources[0]
    if (kept := vendored.vendored_file(pkg, wanted, vendored_dir)) is not None:  # first: Buildroot's own file
        out.dl_files[f"{pkg.dl_dir}/{wanted}"] = kept
        out.record[pkg.name] = vendored.check(tree, pkg, wanted, kept)
        log.info("Buildroot %s %s: vendored %s", pkg.name, pkg.version, out.record[pkg.name]["vendored"])
        return
    deb_name = DEBIAN_SOURCE.get(pkg.raw_name)
    if deb_name is None:
        raise BuildError(f"Buildroot package {pkg.name} {pkg.version}: no Debian source package is known for it "
                         f"(lab/buildroot/debian_sources.py DEBIAN_SOURCE) and no vendored "
                         f"buildroot-offline/dl/{pkg.dl_dir}/{wanted}; with network access, use "
                         f"KJLAB_BUILDROOT_SOURCES=upstream")
    tried: list[str] = []
    for src in _candidates(deb_name, pkg.version, log_path):
        try:
            tarballs = debian.fetch_orig_tarballs(src, log_path)
        except BuildError as exc:
            tried.append(f"{src.version} ({src.suite}): {exc}")
            continue
        if len(tarballs) != 1:
            tried.append(f"{src.version} ({src.suite}): {len(tarballs)} upstream tarballs, expected one")
            continue
        tarball = next(iter(tarballs.values()))
        record: dict[str, Any] = {
            "buildroot_version": pkg.version, "debian_source": f"{src.name} {src.version} ({src.suite})",
            "debian_tarball": tarball.name, "sha256": hash_file(tarball),
            "checked": "apt-get source: SHA256 of the suite's Sources index (signed Release)",
        }
        if _same_as_upstream(tree, pkg, wanted, tarball):
            out.dl_files[f"{pkg.dl_dir}/{wanted}"] = tarball
            record["used_as"] = f"BR2_DL_DIR/{pkg.dl_dir}/{wanted} (byte-identical to upstream; Buildroot's hash)"
            record["version"] = pkg.version
        else:
            srcdir, applied, skipped = _override_tree(tree, pkg, src, tarball, log_path)
            out.overrides[pkg.override_var] = srcdir
            record["used_as"] = f"{pkg.override_var} (Debian's upstream tarball {src.upstream_version})"
            record["version"] = src.upstream_version
            record["patches_applied"] = applied
            if skipped:
                record["patches_not_applying"] = skipped
        out.record[pkg.name] = record
        log.info("Buildroot %s %s: %s from Debian %s %s", pkg.name, pkg.version, record["used_as"], src.name,
                 src.version)
        return
    raise BuildError(f"Buildroot package {pkg.name} {pkg.version} ({wanted}): no source reachable from Debian's "
                     f"source package {deb_name} in {', '.join(SUITES)}"
                     + ("".join(f"\n  tried {t}" for t in tried) if tried else ": no version listed"))


def _same_as_upstream(tree: Tree, pkg: Package, wanted: str, tarball: Path) -> bool:
    return matches_hashes(tree, pkg, wanted, tarball)


def _override_tree(tree: Tree, pkg: Package, src: debian.SourcePackage, tarball: Path,
                   log_path: Path | None) -> tuple[Path, list[str], list[str]]:
    """The unpacked, patched source tree (cached); (path, patches applied, patches skipped)."""
    br_patches = [tree.path / p for p in pkg.patches]
    own_dir = OFFLINE_PATCHES / pkg.raw_name / src.upstream_version
    own = sorted(own_dir.glob("*.patch")) if own_dir.is_dir() else []
    key = hash_inputs({"kind": "buildroot-src", "tarball": hash_file(tarball),
                       "buildroot_patches": [hash_file(p) for p in br_patches],
                       "own_patches": [hash_file(p) for p in own]})
    result: dict[str, list[str]] = {"applied": [], "skipped": []}

    def build(out: Path) -> None:
        run(["tar", "-xf", str(tarball), "-C", str(out), "--strip-components=1"], log_path=log_path,
            timeout=UNPACK_TIMEOUT)
        for patch in br_patches:
            if _applies(out, patch, log_path):
                _apply(out, patch, log_path)
                result["applied"].append(f"buildroot:{patch.name}")
            else:
                result["skipped"].append(f"buildroot:{patch.name}")
        for patch in own:
            if not _applies(out, patch, log_path):
                raise BuildError(f"{patch}: does not apply to {tarball.name}")
            _apply(out, patch, log_path)
            result["applied"].append(f"offline:{patch.name}")
        if not (out / "configure").exists() and (out / "configure.ac").exists():
            run(["autoreconf", "-fi"], log_path=log_path, cwd=out, timeout=AUTORECONF_TIMEOUT)
            result["applied"].append("autoreconf -fi (the tarball has no configure)")
        (out / ".kjlab-patches").write_text("\n".join(f"+{p}" for p in result["applied"])
                                            + "".join(f"\n-{p}" for p in result["skipped"]) + "\n")

    final, _ = cached_dir("buildroot/src", key, build)
    lines = (final / ".kjlab-patches").read_text().splitlines()
    applied = [line[1:] for line in lines if line.startswith("+")]
    skipped = [line[1:] for line in lines if line.startswith("-")]
    return final, applied, skipped


def _applies(tree: Path, patch: Path, log_path: Path | None) -> bool:
    try:
        run(["patch", "-p1", "--dry-run", "--force", "-s", "-d", str(tree), "-i", str(patch)], log_path=log_path,
            timeout=PATCH_TIMEOUT)
        return True
    except CommandFailed:
        return False


def _apply(tree: Path, patch: Path, log_path: Path | None) -> None:
    run(["patch", "-p1", "--force", "-s", "-d", str(tree), "-i", str(patch)], log_path=log_path,
        timeout=PATCH_TIMEOUT)


def write_inputs(provided: Provided, dl_dir: Path, override_file: Path) -> None:
    """Fill dl_dir (hard links into the sources cache) and write the override file."""
    for rel, src in sorted(provided.dl_files.items()):
        dst = dl_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() and hash_file(dst) == hash_file(src):
            continue
        dst.unlink(missing_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    override_file.parent.mkdir(parents=True, exist_ok=True)
    override_file.write_text("".join(f"{var} = {path}\n" for var, path in sorted(provided.overrides.items())))
