"""Sources vendored in kjlab: Buildroot's own download files kept in buildroot-offline/dl/.

For a source that no Debian suite can give (makedumpfile: the archive lists its source
packages, the mirror has none of their files), the project keeps the very file Buildroot
would download, under Buildroot's name: buildroot-offline/dl/<dl_dir>/<file>, with a
one-line `<file>.origin` beside it saying where it comes from (and a README how to make
it again). The offline layer (lab.buildroot.debian_sources) takes it before any Debian
source package: it is Buildroot's file byte for byte, so no Debian tarball could be
better, and the image then does not depend on what the mirror serves that day.

A vendored file is used only when it matches every line of Buildroot's .hash for it (and
Buildroot checks it again in BR2_DL_DIR); one that does not, or that has no .hash line or
no .origin, stops the build naming the package. A vendored file of another version than
the release wants is not looked at (the release's file name is what is looked up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import BUILDROOT_OFFLINE_DIR
from ..cache import hash_file
from ..errors import BuildError
from .tree import Package, Tree, expected_hashes, matches_hashes

VENDORED_DIR = BUILDROOT_OFFLINE_DIR / "dl"


def vendored_file(pkg: Package, filename: str, root: Path | None = None) -> Path | None:
    """The vendored copy of `filename` (a file `pkg` downloads), or None."""
    path = (root or VENDORED_DIR) / pkg.dl_dir / filename
    return path if path.is_file() else None


def check(tree: Tree, pkg: Package, filename: str, path: Path) -> dict[str, Any]:
    """The provenance record of vendored `path`; BuildError when Buildroot's hash refuses it."""
    shown = _shown(path)
    hashes = expected_hashes(tree, pkg, filename)
    if not hashes:
        raise BuildError(f"Buildroot package {pkg.name} {pkg.version}: vendored {shown} is not checked by "
                         f"Buildroot: no line for {filename} in {', '.join(pkg.hash_files) or 'its .hash files'}")
    if not matches_hashes(tree, pkg, filename, path):
        raise BuildError(f"Buildroot package {pkg.name} {pkg.version}: vendored {shown} does not match Buildroot's "
                         f"hash ({', '.join(f'{a} {h}' for a, h in sorted(hashes.items()))} in "
                         f"{', '.join(pkg.hash_files)}; the file has sha256 {hash_file(path)}): remove it or "
                         f"make it again as its README says")
    origin_file = path.with_name(path.name + ".origin")
    if not origin_file.is_file() or not origin_file.read_text().strip():
        raise BuildError(f"Buildroot package {pkg.name} {pkg.version}: vendored {shown} has no {origin_file.name} "
                         f"saying where it comes from")
    return {
        "buildroot_version": pkg.version, "version": pkg.version,
        "vendored": shown, "origin": " ".join(origin_file.read_text().split()),
        "sha256": hash_file(path),
        "checked": "Buildroot's hash (" + ", ".join(sorted(hashes)) + "), here and again by Buildroot in BR2_DL_DIR",
        "used_as": f"BR2_DL_DIR/{pkg.dl_dir}/{filename} (vendored in kjlab, Buildroot's own file; Buildroot's hash)",
    }


def _shown(path: Path) -> str:
    """`path` as the record names it: relative to the project (buildroot-offline/dl/...)."""
    try:
        return f"buildroot-offline/{path.relative_to(BUILDROOT_OFFLINE_DIR)}"
    except ValueError:
        return str(path)
